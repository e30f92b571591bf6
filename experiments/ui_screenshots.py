"""What a new user sees in the MLflow UI, as screenshots in results/ui/.

Makes a fresh store in a temporary folder with the runs a user's first hour makes (a dense run, a sweep of two
pruning levels, a chain of pruning and int8), starts ``python -m edgebench.ui``'s server on a free loopback port
and saves, from a fresh headless Chromium profile (Debian's ``chromium``, driven by Playwright):

    landing.png   MLflow's home page
    runs.png      the link a run prints: the runs table in edgebench's view
    sweep.png     the link a sweep prints: its runs, most accurate first
    chain.png     the chain's parent run with its step runs unfolded
    child.png     a chain step's run page
    models.png    the experiment's Models tab (the LoggedModels)

    pip install -e ".[screenshots]"   # the Python driver; the browser is Debian's chromium (make browser)
    python experiments/ui_screenshots.py [--out results/ui]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from edgebench import ui
from edgebench.tracking import ui_page

FAST = ["data=digits", "trainer.max_epochs=3", "trainer.progress_bar=none"]
RUNS = [  # what a user's first hour makes, on digits to take minutes
    [*FAST],
    ["-m", "+method=magnitude_pruning", "method.sparsity=0.5,0.9", *FAST],
    ["steps=[magnitude_pruning,ptq_int8]", *FAST],
]


def make_store(where: Path) -> str:
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    for args in RUNS:
        print("python -m edgebench", " ".join(args), flush=True)
        out = subprocess.run([sys.executable, "-m", "edgebench", *args], cwd=where, env=env, capture_output=True,
                             text=True)
        if out.returncode != 0:
            raise SystemExit(out.stderr[-3000:])
    return f"sqlite:///{where}/results/mlflow.db"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="results/ui")
    args = ap.parse_args()
    from mlflow.tracking import MlflowClient
    from playwright.sync_api import sync_playwright

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        where = Path(tmp)
        uri = make_store(where)
        client = MlflowClient(uri)
        exp = client.get_experiment_by_name("edgebench").experiment_id
        runs = client.search_runs([exp])
        sweep = next(r.data.tags["sweep_id"] for r in runs if "sweep_id" in r.data.tags)
        child = next(r for r in runs if "chain.step" in r.data.tags)  # a chain's step run
        chain = client.get_run(child.data.tags["mlflow.parentRunId"])
        with ui.serve(uri, where / "results" / "mlartifacts") as base, sync_playwright() as p:
            browser = p.chromium.launch(executable_path=shutil.which("chromium"),
                                        args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
            page = browser.new_context(viewport={"width": 1600, "height": 900}).new_page()

            def shot(name: str, url: str, settle_ms: int = 4000) -> None:
                page.goto(url)
                page.wait_for_timeout(settle_ms)
                for close in page.get_by_role("button", name=re.compile("^close", re.I)).all():
                    if close.is_visible():  # the assistant's panel, pop-ups
                        close.click()
                page.wait_for_timeout(500)
                page.screenshot(path=str(out / f"{name}.png"))
                print(f"wrote {out / name}.png ({url})", flush=True)

            shot("landing", f"{base}/")
            shot("runs", ui_page(base, exp))
            shot("sweep", ui_page(base, exp, sweep))
            page.goto(ui_page(base, exp))
            page.wait_for_timeout(4000)
            row = page.locator("[role=row]", has_text=chain.info.run_name[:20]).first
            expand = row.locator("button, [role=button]").first  # the [+] before a parent run's name
            if expand.count():
                expand.click()
            else:
                print("no expand control in the chain's row:", row.inner_html()[:500] if row.count() else "no row")
            shot("chain", page.url, 2000)
            shot("child", f"{base}/#/experiments/{exp}/runs/{child.info.run_id}?workflowType=machine_learning")
            shot("models", f"{base}/#/experiments/{exp}/models?workflowType=machine_learning")
            browser.close()


if __name__ == "__main__":
    main()
