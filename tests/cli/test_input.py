"""Bad input to `resnet-tui`: one line on stderr, exit code 2, nothing started or harmed.

Run in the test's process (`invoke`, through the same entry point as the installed command).
"""

import os
import pickle

import pytest
from PIL import Image

from tests.cli.command import BAD_INPUT, TINY, invoke
from tests.conftest import record_fault

BAD_INPUTS = [
    (["--arch", "resnet21"], "did you mean"),
    (["--dataset", "mnistt"], "did you mean mnist"),
    (["--optimizer", "sgdd"], "did you mean sgd"),
    (["--schedule", "cosin"], "did you mean cosine"),
    (["--lr", "0"], "--lr must be a positive number"),
    (["--lr", "-0.1"], "--lr must be a positive number"),
    (["--epochs", "0"], "--epochs must be a positive number"),
    (["--batch-size", "-4"], "--batch-size must be a positive number"),
    (["--epochs", "abc"], "--epochs"),
    (["--device", "tpu"], "unknown device 'tpu'"),
    (["--dataset", "mnist"], "add --download"),
    (["--classes", "0,99"], "no class '99'"),
    (["--classes", "circle"], "at least two classes"),
    (["--val-fraction", "1.5"], "--val-fraction"),
    (["--no-such-flag"], "No such option"),
    (["--config", "missing.toml"], "does not exist"),
    (["--init", "run:7"], "there is no run 7"),
    (["--init", "run:x"], "write run:ID"),
    (["--init", "imagenet"], "resnet8 has no ImageNet weights"),
    (["--init", "file:missing.pt"], "there is no such file"),
    (["--init", "weights.bin"], "unknown --init"),
    (["--freeze", "last-0"], "write last-K"),
    (["--freeze", "heads"], "did you mean head"),
    (
        ["--freeze", "lp-ft", "--probe", "sgd", "--epochs", "2", "--probe-epochs", "2"],
        "no epoch to fine-tune",
    ),
    (["--head", "conv"], "unknown head"),
    (["--bn", "sync"], "BatchNorm mode"),
    (["--layer-decay", "1.5"], "--layer-decay must be above 0"),
    (["--l2sp", "0.1"], "scratch does not have"),
    (["--teacher", "run:9"], "--teacher run:9: there is no run 9"),
    (["--teacher", "file:t.pt"], "a teacher is a run in the store"),
    (["--teacher", "run:1", "--kd-alpha", "2"], "--kd-alpha must be between 0 and 1"),
    (["--teacher", "run:1", "--kd-temperature", "0"], "--kd-temperature must be a positive"),
    (["--lwf", "0.5"], "give the source with --init run:ID"),
    (["--lr", "nan"], "--lr must be a finite number"),
    (["--early-stop-patience", "0"], "--early-stop-patience must be a positive number"),
    (["--early-stop-patience", "10" * 40], "--early-stop-patience must be a positive number"),
    (["--early-stop-patience", "two"], "--early-stop-patience"),
    (["--early-stop-min-delta", "-1", "--early-stop-patience", "3"], "must be 0 or more"),
    (["--early-stop-min-delta", "inf", "--early-stop-patience", "3"], "a finite number"),
    (["--early-stop-metric", "val_f1", "--early-stop-patience", "3"], "early-stopping metric"),
    (["--early-stop-min-delta", "0.01"], "add --early-stop-patience"),
    (["--early-stop-metric", "val_loss"], "add --early-stop-patience"),
]


@pytest.mark.parametrize("args, message", BAD_INPUTS, ids=[" ".join(a) for a, _ in BAD_INPUTS])
def test_bad_input_gets_one_line_and_exit_code_2(tmp_path, args, message):
    result = invoke("run", *args, cwd=tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error:") and message in lines[0]
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "runs").exists()  # nothing was started
    record_fault(BAD_INPUT, True)


def test_bad_files_get_one_line_and_exit_code_2(tmp_path):
    (tmp_path / "empty").mkdir()
    single = tmp_path / "single" / "cats"
    single.mkdir(parents=True)
    (single / "a.png").write_bytes(b"")
    (tmp_path / "broken.toml").write_text("epochs = = 3\n")
    (tmp_path / "list.json").write_text("[1, 2]")
    (tmp_path / "notes.db").write_text("not sqlite at all\n" * 50)
    readonly = tmp_path / "ro.db"
    assert invoke("runs", "--db", str(readonly), cwd=tmp_path).returncode == 0
    readonly.chmod(0o400)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(os.urandom(4096))
    evil, marker = tmp_path / "evil.pt", tmp_path / "pwned"
    with open(evil, "wb") as file:
        pickle.dump({"model": RunsCode(f"touch {marker}")}, file, protocol=2)
    folder = tmp_path / "pictures"
    for split in ("train", "val"):
        for name, colour in (("red", (255, 0, 0)), ("blue", (0, 0, 255))):
            (folder / split / name).mkdir(parents=True)
            for index in range(4):
                image = Image.new("RGB", (16, 16), colour)
                image.save(folder / split / name / f"{index}.png")
    (folder / "train" / "red" / "broken.png").write_bytes(b"not a png")
    cases = [
        (["run", "--dataset", f"imagefolder:{tmp_path / 'empty'}"], "no images found"),
        (["run", "--dataset", f"imagefolder:{tmp_path / 'nowhere'}"], "does not exist"),
        (["run", "--dataset", f"imagefolder:{tmp_path / 'single'}"], "only one class"),
        (["run", "--config", str(tmp_path / "broken.toml")], "not valid TOML"),
        (["run", "--config", str(tmp_path / "list.json")], "table of option names"),
        (["run", "--db", str(tmp_path / "notes.db")], "not a resnet-tui run store"),
        (["run", "--db", str(readonly)], "read-only"),
        (["runs", "--sort", "accuracy"], "unknown sort column"),
        (["run", "--init", "run:abc"], "--init run:abc: write run:ID or run:ID:last"),
        (["run", "--config", "[red]:x:.toml"], "config file [red]:x:.toml does not exist"),
        (["--db", str(tmp_path / "notes.db")], "not a resnet-tui run store"),
        (["show", "42"], "no run 42"),
        (["resume", "42"], "no run 42"),
        (["resume", "42", "--device", "tpu"], "unknown device 'tpu'"),
        (["run", *TINY, "--init", f"file:{garbage}"], "cannot be read as weights"),
        (["run", *TINY, "--init", f"file:{evil}"], "cannot be read as weights"),
        (["run", *TINY, "--dataset", f"imagefolder:{folder}", "--workers", "0"], "broken.png"),
        (["ensemble", "42", "43"], "there is no run 42"),
        (["soup", "42"], "a soup needs two runs or more"),
        (["ensemble", "42"], "an ensemble needs two runs or more"),
        (["soup", "42", "--with-init", "x"], "--with-init must be a number from 0 to 1"),
    ]
    for args, message in cases:
        result = invoke(*args, cwd=tmp_path)
        assert result.returncode == 2, (args, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and message in lines[0], (args, result.stderr)
        record_fault(BAD_INPUT, True)
    assert (tmp_path / "notes.db").read_text().startswith("not sqlite")
    assert not marker.exists()  # the pickle's code never ran


class RunsCode:
    """Pickles as a call of os.system: loading it unsafely would run the command."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self) -> tuple:
        return (os.system, (self.command,))
