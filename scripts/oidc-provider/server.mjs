// A real OpenID Connect provider for the dashboard's sign-in tests: panva's certified
// `oidc-provider` (npm, pinned in package-lock.json), with one confidential client and the test
// accounts it is given. Started by tests/browser/oidc_provider.py on a free loopback port.
//
// Environment: OIDC_PROVIDER_MODULES (the node_modules of `scripts/oidc-provider.sh modules`),
// OIDC_ISSUER, OIDC_PORT, OIDC_CLIENT_ID, OIDC_CLIENT_SECRET, OIDC_REDIRECT_URI,
// OIDC_SCOPE_CLAIM (the claim the dashboard reads the region from) and OIDC_ACCOUNTS (JSON:
// account id -> extra claims). Sign-in uses the library's development interactions: the login
// is the account id, any password; an unknown login gets no account and the flow fails.
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
};

const modules = env('OIDC_PROVIDER_MODULES');
const { default: Provider } = await import(pathToFileURL(join(modules, 'oidc-provider', 'lib', 'index.js')).href);

const accounts = JSON.parse(env('OIDC_ACCOUNTS'));
const scopeClaim = env('OIDC_SCOPE_CLAIM');
// A fresh signing key per run: the relying party must fetch it from the JWKS named in discovery.
const signingKey = { ...generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'jwk' }),
  kid: randomBytes(8).toString('hex'), use: 'sig', alg: 'RS256' };

const provider = new Provider(env('OIDC_ISSUER'), {
  clients: [{
    client_id: env('OIDC_CLIENT_ID'),
    client_secret: env('OIDC_CLIENT_SECRET'),
    redirect_uris: [env('OIDC_REDIRECT_URI')],
    response_types: ['code'],
    grant_types: ['authorization_code'],
    token_endpoint_auth_method: 'client_secret_basic',
  }],
  jwks: { keys: [signingKey] },
  claims: { openid: ['sub'], mesh: [scopeClaim] },
  // The scope claim goes into the ID token itself (as an identity provider's group or role
  // claims usually do), not only into the userinfo answer.
  conformIdTokenClaims: false,
  pkce: { required: () => true },
  features: { devInteractions: { enabled: true } },
  cookies: { keys: [randomBytes(32).toString('hex')] },
  async findAccount(ctx, id) {
    if (!Object.hasOwn(accounts, id)) return undefined;
    return { accountId: id, async claims() { return { sub: id, ...accounts[id] }; } };
  },
});

const server = provider.listen(Number(env('OIDC_PORT')), '127.0.0.1', () => {
  console.log(`oidc-provider ready at ${provider.issuer}`);
});
for (const signal of ['SIGTERM', 'SIGINT']) process.on(signal, () => server.close(() => process.exit(0)));
