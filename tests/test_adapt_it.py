"""The "your own model and data" path of notebook 00, run as written: a folder of CSVs and a local checkpoint
to a compressed, saved model with a card, in the three commands the notebook gives (tiny preset here)."""

from __future__ import annotations

import re
import shlex

import nbformat
import pandas as pd
import pytest

from support import REPO, write_synthetic


def adapt_it_commands() -> list[list[str]]:
    """The bash block of notebook 00's "Your own model and data" section, one argv per line."""
    nb = nbformat.read(REPO / "notebooks" / "00_overview.ipynb", as_version=4)
    cell = next(c for c in nb.cells if c.cell_type == "markdown" and c.source.startswith("## Your own model and data"))
    block = re.search(r"```bash\n(.*?)```", cell.source, re.S).group(1)
    return [shlex.split(line) for line in block.strip().splitlines()]


def test_your_own_model_and_data_ends_in_a_saved_carded_student(tmp_path, monkeypatch, capsys):
    from huggingface_hub import ModelCard
    from transformers import pipeline

    from paperlib import cli
    from paperlib.models import load_model

    commands = adapt_it_commands()
    assert [argv[:2] for argv in commands] == [["paperlib", "prune"], ["paperlib", "fuse"], ["paperlib", "distill"]]
    monkeypatch.chdir(tmp_path)
    write_synthetic(tmp_path / "my_data", n_per_class=50, layout="train_test")  # train.csv + test.csv
    model, tokenizer = load_model("random:tiny", num_labels=3)  # the "local checkpoint": a folder, as a user has it
    model.save_pretrained(tmp_path / "my_checkpoint")
    tokenizer.save_pretrained(tmp_path / "my_checkpoint")
    for argv in commands:
        argv = [("tiny" if a == "quick" else a) for a in argv[1:]] + ["--quiet"]  # as written, on the tiny preset
        cli.main(argv)
    folder = tmp_path / "runs" / "mine" / "seed-0" / "my_data"  # the first (and only) pipeline seed
    distill = pd.read_parquet(folder / "distill.parquet")
    k_star = int(distill.loc[distill["best_depth"], "depth"].iloc[0])
    students = sorted(p.name for p in (folder / "students").iterdir())
    assert students == [f"random-forest-k{k_star}-kd"]
    saved = folder / "students" / students[0]
    classify = pipeline("text-classification", model=str(saved), device="cpu")
    test = pd.read_csv(tmp_path / "my_data" / "test.csv")
    out = classify(test["text"].astype(str).tolist()[:5], truncation=True)
    assert {o["label"] for o in out} <= {"0", "1", "2"}
    card = ModelCard.load(saved / "README.md")
    kd = distill[(distill["mode"] == "kd") & (distill["depth"] == k_star)].iloc[0]
    assert f"| this model | {kd['test_acc']:.4f} |" in card.text
    assert "TF-IDF + LR (classical reference)" in card.text and "## Speed" in card.text
    assert card.data.base_model == "my_checkpoint" and card.data.datasets == ["my_data"]
    assert "saved the k=" in capsys.readouterr().out


@pytest.mark.parametrize("line", range(3))
def test_the_commands_name_the_same_data_model_and_runs_folder(line):
    argv = adapt_it_commands()[line]
    options = dict(zip(argv[2::2], argv[3::2]))
    assert options["--dataset"] == "my_data" and options["--model"] == "my_checkpoint"
    assert options["--out"] == "runs/mine"
