"""The Predict page's "Call this endpoint from code" snippets — Platform, HUB v1 and Roboflow — read from the page in
real headless Chromium and run as a user would paste them (bash, curl, base64), against the real server."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest
from conftest import KEYS, MODEL_ID

pytestmark = pytest.mark.integration

KEY = KEYS[1]


@pytest.fixture(scope="module")
def server(keyed_server):
    return keyed_server  # the session's detect server with API keys, answering to MODEL_ID


def page_snippets(browser, url: str, key: str) -> dict[str, str]:
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(url + "/", timeout=30_000)
        page.fill("#api-key", key)
        page.dispatch_event("#api-key", "input")
        page.fill("#conf", "0.3")
        page.dispatch_event("#conf", "input")
        page.wait_for_function(f"document.getElementById('curl-roboflow').textContent.includes('{MODEL_ID}/1')")
        return {name: page.text_content(f"#{name}") for name in ("curl", "curl-hub", "curl-roboflow")}
    finally:
        context.close()


def test_the_pages_snippets_run_as_pasted(server, browser, bus_jpg, tmp_path):
    snippets = page_snippets(browser, server.url, KEY)
    assert "Bearer $API_KEY" in snippets["curl"] and "x-api-key: $API_KEY" in snippets["curl-hub"]
    assert f"/v1/predict/{MODEL_ID}" in snippets["curl-hub"] and "confidence=30" in snippets["curl-roboflow"]
    shutil.copy(bus_jpg, tmp_path / "image.jpg")
    answers = {}
    for name, snippet in snippets.items():
        done = subprocess.run(["bash", "-c", snippet], cwd=tmp_path, env={**os.environ, "API_KEY": KEY},
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        answers[name] = json.loads(done.stdout)
    assert answers["curl"]["metadata"]["imageCount"] == 1 and answers["curl"]["images"][0]["results"]
    assert answers["curl-hub"]["success"] is True and answers["curl-hub"]["data"]
    assert answers["curl-roboflow"]["image"] == {"width": 810, "height": 1080} and answers["curl-roboflow"]["predictions"]
    assert len(answers["curl-roboflow"]["predictions"]) == len(answers["curl"]["images"][0]["results"])
