"""`dalitrain train` / `python -m dalitrain.train`: bad input ends in one line naming the file."""
import pytest

from dalitrain import cli, train


@pytest.mark.parametrize("entry", [lambda argv: cli.main(["train", *argv]), train.main])
def test_missing_config_is_one_line(tmp_path, capsys, entry):
    missing = tmp_path / "missing.yaml"
    assert entry([str(missing)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and f"{missing}: no such config file" in err


def test_unknown_override_is_one_line(tmp_path, capsys):
    config = tmp_path / "exp.yaml"
    config.write_text("data:\n  datasets:\n    - {name: a, manifest: a.txt, num_classes: 3}\n")
    assert train.main([str(config), "optim.learning_rate=1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "optim.learning_rate: unknown key" in err
