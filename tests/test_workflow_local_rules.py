"""Which rules run on the submitting machine and which become cluster jobs, as Snakemake itself parses them.

The report rules are cheap (a table or a PNG from files already there) and are meant to run where Snakemake
runs, never as SLURM jobs. A rule derived with ``use rule ... with:`` does *not* inherit ``localrule: True``
(Snakemake 9.27), so each derived rule must repeat it; this test reads the parsed workflow, so a derived rule
that forgets it fails here instead of queueing a five-second job behind a day of training.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.workflow_layout import make_layout

# Parses the workflow with the demo config (its photos are rule outputs, so no data is needed) through the
# Snakemake API and prints {rule: local?}. A subprocess: Snakemake's parser keeps global state.
PARSE = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    from snakemake.api import SnakemakeApi
    from snakemake.settings.types import ConfigSettings, OutputSettings, ResourceSettings, StorageSettings

    root = Path(sys.argv[1])
    with SnakemakeApi(OutputSettings()) as api:
        wf = api.workflow(
            resource_settings=ResourceSettings(), storage_settings=StorageSettings(),
            config_settings=ConfigSettings(configfiles=[root / "config/config.yaml", root / "config/demo/config.yaml"]),
            workdir=root, snakefile=root / "workflow/Snakefile",
        )
        workflow = wf._workflow  # parses the Snakefile
        print("RULES " + json.dumps({r.name: r.name in workflow._localrules for r in workflow.rules}))
    """
)

# Meant to run where Snakemake runs (besides `all`, which runs nothing).
LOCAL = {"report_loss_stage1", "report_loss_stage2", "report_align", "report_align_target", "report_align_reference", "report_extract",
         "report_scores"}
# Real work: each one a cluster job.
SUBMITTED = {"align", "align_target", "align_reference", "extract", "pack", "train_stage1", "train_stage2", "edit", "score",
             "demo_album", "demo_assets", "video_frames"}


def parsed_rules(tmp_path: Path) -> dict[str, bool]:
    layout = make_layout(tmp_path)
    script = tmp_path / "parse.py"
    script.write_text(PARSE)
    r = subprocess.run([sys.executable, str(script), str(layout.root)], cwd=layout.root, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    line = next(x for x in r.stdout.splitlines() if x.startswith("RULES "))
    return json.loads(line.removeprefix("RULES "))


def test_report_rules_are_local_and_work_rules_are_submitted(tmp_path: Path) -> None:
    rules = parsed_rules(tmp_path)
    # every report rule, derived or not, is local; nothing else is, so the lists above stay complete
    assert {name for name in rules if name.startswith("report_")} == LOCAL, sorted(rules)
    assert set(rules) == LOCAL | SUBMITTED | {"all"}, sorted(rules)
    assert {name for name, local in rules.items() if local} == LOCAL, rules
