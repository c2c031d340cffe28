"""A real OpenID Connect provider for the browser tests: panva's `oidc-provider` from npm
(scripts/oidc-provider.sh installs the pinned version into .cache), run by Node on a free
loopback port with one confidential client and the given test accounts."""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.request
from pathlib import Path

from meshcli.supervisor import free_port
from meshkernel.config import PROJECT_ROOT

SCRIPT = PROJECT_ROOT / "scripts" / "oidc-provider.sh"
SERVER = PROJECT_ROOT / "scripts" / "oidc-provider" / "server.mjs"
CLIENT_ID = "referral-mesh-dashboard"
CLIENT_SECRET = "client-secret-for-the-browser-tests"


class OidcProvider:
    """Reached as http://localhost:<port> (another site than the dashboard's 127.0.0.1, so the
    browser treats the return from the provider as the cross-site navigation it is in production)."""

    def __init__(self, redirect_uri: str, accounts: dict[str, dict], log_dir: Path, scope_claim: str = "mesh_region"):
        self.port = free_port()
        self.issuer = f"http://localhost:{self.port}"
        self.redirect_uri = redirect_uri
        self.accounts = accounts
        self.scope_claim = scope_claim
        self.log_file = log_dir / "oidc-provider.log"
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 90.0) -> OidcProvider:
        modules = subprocess.run(
            [str(SCRIPT), "modules"], check=True, capture_output=True, text=True, timeout=600
        ).stdout.strip()
        env = dict(
            os.environ,
            OIDC_PROVIDER_MODULES=modules,
            OIDC_ISSUER=self.issuer,
            OIDC_PORT=str(self.port),
            OIDC_CLIENT_ID=CLIENT_ID,
            OIDC_CLIENT_SECRET=CLIENT_SECRET,
            OIDC_REDIRECT_URI=self.redirect_uri,
            OIDC_SCOPE_CLAIM=self.scope_claim,
            OIDC_ACCOUNTS=json.dumps(self.accounts),
        )
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        with self.log_file.open("wb") as log:
            self.process = subprocess.Popen(
                ["node", str(SERVER)], env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        discovery = f"http://127.0.0.1:{self.port}/.well-known/openid-configuration"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError("oidc-provider exited at start:\n" + self.log_file.read_text()[-3000:])
            try:
                with urllib.request.urlopen(discovery, timeout=2) as answer:
                    if json.load(answer)["issuer"] == self.issuer:
                        return self
            except OSError:
                time.sleep(0.3)
        self.stop()
        raise TimeoutError("oidc-provider did not answer:\n" + self.log_file.read_text()[-3000:])

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=15)
