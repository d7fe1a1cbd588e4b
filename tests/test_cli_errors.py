"""Every command's bad input ends in one line on stderr, `dalitrain COMMAND: error: ...`, and exit status 2;
an unexpected error keeps its traceback."""
import pytest

from dalitrain.cli import main
from dalitrain.errors import DalitrainError


def bad_inputs(tmp_path):
    a_file = tmp_path / "a_file"
    a_file.write_text("not a folder\n")
    missing = tmp_path / "missing"
    return [
        (["synth", "--out", str(a_file / "corpus"), "--preset", "tiny"], "cannot create the output folder"),
        (["scan", "--out", str(tmp_path / "index.json")], "nothing to scan"),
        (["prepare", str(missing / "train.txt"), "--out", str(tmp_path / "out"), "--codec", "vp9",
          "--short-side", "64", "--gop", "8"], "train.txt"),
        (["config", str(missing / "exp.yaml")], "no such config file"),
        (["info", "model", "mvitv2_huge"], "unknown model 'mvitv2_huge'"),
        (["bench", "nosuch"], "unknown benchmark 'nosuch'"),
        (["train", str(missing / "exp.yaml")], "no such config file"),
        (["relations", str(missing / "best.pt")], "best.pt"),
        (["plot", str(missing)], "no metrics.jsonl"),
        (["demo", "--out", str(a_file), "--preset", "tiny"], "cannot create the output folder"),
    ]


def test_every_command_reports_bad_input_in_one_line(tmp_path, capsys):
    cases = bad_inputs(tmp_path)
    from dalitrain.cli import SUBCOMMANDS
    assert {argv[0] for argv, _ in cases} == set(SUBCOMMANDS)  # a new command needs its case here
    for argv, reason in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"dalitrain {argv[0]}: error: ") and reason in lines[0], err


def test_an_unexpected_error_keeps_its_traceback(monkeypatch):
    import dalitrain.config_cli as config_cli

    def broken(args):
        raise KeyError("a bug")
    monkeypatch.setattr(config_cli, "run", broken)
    with pytest.raises(KeyError):
        main(["config", "any.yaml"])


def test_the_expected_errors_share_one_base():
    from dalitrain.config import ConfigError
    from dalitrain.data.manifest import ManifestError
    from dalitrain.data.scan import ScanIndexError
    from dalitrain.engine.checkpoint import CheckpointWriteError
    from dalitrain.engine.trainer import TrainingStopped
    from dalitrain.models.pretrained import CheckpointError
    from dalitrain.pipelines.loader import SkippedFilesError
    for error in (ConfigError, ManifestError, ScanIndexError, CheckpointError, CheckpointWriteError, SkippedFilesError,
                  TrainingStopped):
        assert issubclass(error, DalitrainError), error
