"""The stream workers' state folders are private to the service's user, whatever the umask."""

import os
import stat

from meshkernel.config import MeshSettings
from meshkernel.streams import make_app


def test_kernel_private_state_the_worker_data_folder_is_0700(tmp_path):
    previous = os.umask(0o022)
    try:
        config = MeshSettings(state_dir=tmp_path / "var", topic_prefix="p.")
        app = make_app("region", config)
        assert app.conf.datadir.as_posix().startswith((tmp_path / "var").as_posix())
        for folder in (tmp_path / "var", tmp_path / "var" / "p.region-data"):
            assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder
    finally:
        os.umask(previous)
