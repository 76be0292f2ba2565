"""The assembled app (app.py): the SCIM routes under the base path, the probes beside them,
whichever of them Starlette tries first."""

import pytest
from starlette.testclient import TestClient

from scim_server.app import AppSettings, create_app
from scim_server.auth import TokenStore
from scim_server.storage.sqlite import SqliteStorage


@pytest.mark.parametrize("base", ["/scim/v2", ""])
def test_the_probes_and_the_scim_endpoints_answer_under_any_base_path(tmp_path, base):
    (tmp_path / "token").write_text("s3cret-token\n")
    app = create_app(AppSettings(base_path=base),
                     lambda: SqliteStorage(str(tmp_path / "scim.db")),
                     TokenStore([str(tmp_path / "token")]))
    auth = {"Authorization": "Bearer s3cret-token"}
    with TestClient(app) as c:
        assert c.get("/healthz").json() == {"status": "ok"}
        assert c.get("/readyz").json()["status"] == "ok"
        assert c.get("/metrics").status_code == 200
        r = c.post(f"{base}/Users", json={"userName": "ann"}, headers=auth)
        assert r.status_code == 201, r.text
        got = c.get(f"{base}/Users", params={"filter": 'userName eq "ann"'}, headers=auth)
        assert got.json()["totalResults"] == 1
        assert c.get(f"{base}/Nope", headers=auth).status_code == 404
