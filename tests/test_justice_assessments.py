"""The justice job with OASys assessments and accredited programmes added
(configs/examples/justice_with_assessments.yaml): the justice job's model and sources
unchanged, so the two cannot drift apart; and a small run through the CLI that links the
assessments and referrals to the people of the five justice sources."""

from __future__ import annotations

import json

import yaml

from tests.conftest import JUSTICE, ROOT, cli, config_variant

WITH_ASSESSMENTS = ROOT / "configs" / "examples" / "justice_with_assessments.yaml"
ADDED = ("oasys", "programmes")


def test_its_model_and_justice_sources_are_justice_yaml_s():
    """Everything but the job's name, description and the two added sources is
    justice.yaml's: when the justice model changes, this fails until both say the same."""
    justice, added = yaml.safe_load(JUSTICE.read_text()), yaml.safe_load(WITH_ASSESSMENTS.read_text())
    assert added["model"] == justice["model"]
    assert {k: v for k, v in added["sources"].items() if k not in ADDED} == justice["sources"]
    assert set(added["sources"]) == set(justice["sources"]) | set(ADDED)
    for key in set(justice) | set(added):
        if key not in ("job", "description", "sources"):
            assert added.get(key) == justice.get(key), key


def test_assessments_and_referrals_join_their_people(tmp_path):
    data, out = tmp_path / "data", tmp_path / "run"
    res = cli("synth", "--people", "200", "--seed", "6", "--out", str(data), "--departments")
    assert res.returncode == 0, res.stderr

    def fast(raw: dict) -> None:
        raw["model"]["training"]["u_max_pairs"] = 100_000
        raw["model"]["training"]["em_max_pairs"] = 100_000
        raw["model"]["training"]["u_chunks"] = 1

    config = config_variant(WITH_ASSESSMENTS, tmp_path / "job.yaml", fast)
    res = cli("run", str(config), "--data", str(data), "--out", str(out))
    assert res.returncode == 0, res.stderr
    truth = tmp_path / "truth_all.csv"
    lines = (data / "truth.csv").read_text().splitlines()
    lines += [row for row in (data / "truth_departments.csv").read_text().splitlines()[1:]
              if row.split(",", 1)[0] in ADDED]
    truth.write_text("\n".join(lines) + "\n")
    res = cli("evaluate", str(out), "--truth", str(truth))
    assert res.returncode == 0, res.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    for source in ADDED:
        rows = manifest["rows"][source]
        assert rows["read"] > 0 and rows["rejected"] == 0
        # Every assessment and referral is about a justice person: nearly all join one.
        assert rows["linked"] >= 0.95 * rows["read"], (source, rows)
        assert (out / "analyst" / f"{source}.parquet").is_file()
    scores = json.loads((out / "evaluation.json").read_text())
    assert scores["pairwise"]["precision"] >= 0.97 and scores["pairwise"]["recall"] >= 0.85, scores["pairwise"]
