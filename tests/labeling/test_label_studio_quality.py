"""Label quality on a real Label Studio: annotations written through its API by three users,
one of whom swaps two classes, are synced with `labeling.sync` and the swap is found and named
for that user alone."""

from __future__ import annotations

import uuid

import pytest
import requests

import labeling
import mining
from labeling import Retry
from labeling.quality import quality
from labeling.vendors.label_studio import LabelStudioVendor

from .tagged import scenes_lake

NO_WAIT = Retry(attempts=3, base_s=0.0, max_s=0.0, sleep=lambda s: None)
SWAP = {"hard_brake": "cut_in", "cut_in": "hard_brake"}


def api(server, method: str, path: str, **kwargs):
    headers = {"Authorization": f"Token {server.token}"}
    response = requests.request(method, server.url + path, headers=headers, timeout=60, **kwargs)
    assert response.status_code < 300, response.text[:300]
    return response.json()


def user(server, name: str) -> int:
    """A Label Studio user of the organisation (created once per server), by id."""
    email = f"{name}@example.com"
    listed = api(server, "GET", "/api/users/")
    listed = listed.get("results", listed) if isinstance(listed, dict) else listed
    for known in listed:
        if known.get("email") == email:
            return known["id"]
    return api(server, "POST", "/api/users/", json={"email": email, "username": name})["id"]


@pytest.mark.timeout(600)
def test_a_swap_written_through_label_studio_is_found_for_that_annotator(label_studio, tmp_path):
    lake = scenes_lake(tmp_path / "lake", n=180, seed=11)
    m = mining.open(lake.root)
    m.save("all", m.sql("SELECT scene_id, 1.0 AS score FROM scenes ORDER BY scene_id"))
    vendor = LabelStudioVendor(
        label_studio.url, label_studio.token, project_title=f"quality {uuid.uuid4().hex[:8]}"
    )
    sent = labeling.submit(lake, "all", vendor, batch_size=60, retry=NO_WAIT)
    assert sum(b.submitted for b in sent.batches) == 180

    tags = dict(lake.connect().execute("SELECT scene_id, tags FROM scenes").fetchall())
    annotators = [user(label_studio, n) for n in ("ana.k", "chen.w", "ravi.s")]
    project = vendor.ensure_project()
    listing = {"project": project, "page_size": 1000, "include": "id,data"}
    tasks = api(label_studio, "GET", "/api/tasks", params=listing)["tasks"]
    swapped = 0
    for i, task in enumerate(sorted(tasks, key=lambda t: t["id"])):
        who = annotators[i % 3]
        truth = list(tags[task["data"]["scene_id"]])
        given = [SWAP.get(c, c) for c in truth] if who == annotators[1] else truth
        swapped += given != truth
        result = [{"from_name": "scenario", "to_name": "description", "type": "choices",
                   "value": {"choices": given or ["other"]}}]  # fmt: skip
        api(label_studio, "POST", f"/api/tasks/{task['id']}/annotations/",
            json={"result": result, "lead_time": 3, "completed_by": who})  # fmt: skip
    assert swapped >= 10  # enough planted errors to be significant

    synced = labeling.sync(lake, vendor, retry=NO_WAIT)
    assert synced.labeled == 180

    rows = quality(lake)
    suspects = {r["annotator"] for r in rows if r["suspect"] and r["kind"] == "annotator"}
    assert suspects == {"chen.w@example.com"}
    chen = next(r for r in rows if r["annotator"] == "chen.w@example.com")
    assert "swap" in chen["reason"], chen["reason"]
    assert {tuple(c[:2]) for c in chen["confused"]} == {
        ("cut_in", "hard_brake"), ("hard_brake", "cut_in")}  # fmt: skip
    clean = [r for r in rows if r["kind"] == "annotator" and r["annotator"] != chen["annotator"]]
    assert len(clean) == 2 and all(r["agreement"] == 1.0 for r in clean)
