"""Screenshot of the MLflow UI comparing a sweep's runs on a scatter chart of test/acc against size/bytes_artifact.

Starts ``python -m edgebench.ui`` on a free loopback port against results/mlflow.db, opens the
compare-runs page of the finished runs of an experiment (default ``study-fashion_sweep``, made by
``python -m edgebench.study fashion_sweep``) in headless Chromium (Debian's ``chromium``, driven by Playwright),
picks the scatter plot's axes and saves ``results/mlflow_ui_scatter.png`` (used in the README).

    pip install playwright       # the Python driver only; the browser is Debian's chromium (make browser)
    python experiments/ui_screenshot.py [--experiment study-fashion_sweep]
"""

from __future__ import annotations

import argparse
import json
import shutil
import urllib.parse
from pathlib import Path

from edgebench import ui


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--experiment", default="study-fashion_sweep")
    ap.add_argument("--out", default="results/mlflow_ui_scatter.png")
    args = ap.parse_args()
    from mlflow.tracking import MlflowClient
    from playwright.sync_api import sync_playwright

    uri = f"sqlite:///{Path('results/mlflow.db').resolve()}"
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(args.experiment)
    runs = [r for r in client.search_runs([exp.experiment_id], "attributes.status = 'FINISHED'")
            if "edgebench.sweep_parent" not in r.data.tags]
    with ui.serve(uri, "results/mlartifacts") as base:
        ids = urllib.parse.quote(json.dumps([r.info.run_id for r in runs]))
        url = f"{base}/#/compare-runs?runs={ids}&experiments={urllib.parse.quote(json.dumps([exp.experiment_id]))}"
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=shutil.which("chromium"), args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(url)
            page.get_by_role("tab", name="Scatter Plot").click()
            panel = page.locator("[role=tabpanel][data-state=active]")
            for axis, key in (("x", "size/bytes_artifact"), ("y", "test/acc")):
                page.locator(f"#{axis}-axis-selector").click()
                page.get_by_role("option", name=key, exact=True).click()
                page.wait_for_timeout(500)
            page.wait_for_timeout(2000)
            panel.screenshot(path=args.out)
            browser.close()
        print(f"wrote {args.out} ({len(runs)} runs)")


if __name__ == "__main__":
    main()
