"""`dalitrain info model`: the printed summary, the JSON file, and errors."""
import json

from dalitrain.cli import main


def test_info_model_writes_params_gmacs_and_stage_shapes(tmp_path, capsys):
    out = tmp_path / "info" / "tiny.json"
    assert main(["info", "model", "mvitv2_tiny", "--frames", "16", "--size", "64", "--json", str(out)]) == 0
    info = json.loads(out.read_text())
    assert isinstance(info["params"], int) and isinstance(info["gmacs"], float)
    assert info["params"] > 2_000_000 and info["gmacs"] > 0.3
    assert (info["frames"], info["size"]) == (16, 64)
    assert [s["shape"] for s in info["stages"]] == [[48, 8, 16, 16], [96, 8, 8, 8], [192, 8, 4, 4], [384, 8, 2, 2]]
    printed = capsys.readouterr().out
    assert "mvitv2_tiny at 16x64x64" in printed and "stage 4: 384x8x2x2" in printed


def test_clip_length_scales_the_macs_linearly_with_the_token_count(tmp_path):
    for frames in (8, 16):
        json_file = str(tmp_path / f"{frames}.json")
        assert main(["info", "model", "mvitv2_tiny", "--frames", str(frames), "--json", json_file]) == 0
    short, long = (json.loads((tmp_path / f"{f}.json").read_text()) for f in (8, 16))
    assert short["params"] < long["params"]  # the temporal position table grows with T
    assert 2.0 <= long["gmacs"] / short["gmacs"] <= 2.5  # linear layers double; attention grows faster


def test_unknown_model_is_one_line_error(capsys):
    assert main(["info", "model", "mvitv2_huge"]) == 2
    err = capsys.readouterr().err.strip()
    assert "unknown model 'mvitv2_huge'" in err and "mvitv2_tiny" in err and "\n" not in err


def test_info_model_without_a_name_is_one_line_error(capsys):
    assert main(["info", "model"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("dalitrain info: error: dalitrain info model: name a model (") and "\n" not in err


def test_info_model_freeze_reports_trainable_params_and_activations_per_frame(tmp_path, capsys):
    out = tmp_path / "sfa.json"
    assert main(["info", "model", "vivit_fe_tiny", "--frames", "16", "--freeze", "spatial", "--json", str(out)]) == 0
    full, frozen = json.loads(out.read_text())["training"]
    assert (full["setting"], frozen["setting"]) == ("full training", "frozen spatial + mlp adapter")
    assert full["trainable_params"] == json.loads(out.read_text())["params"]
    d = 96  # vivit_fe_tiny's width: the adapter is Linear(d, d) -> Linear(d, d)
    temporal = 2 * (12 * d * d + 13 * d) + 2 * d + (1 + 8) * d + d  # 2 blocks, final norm, position table, CLS
    assert frozen["trainable_params"] == temporal + 2 * (d * d + d)
    assert 0 < frozen["activation_mib_per_frame"] * 20 < full["activation_mib_per_frame"]
    assert "frozen spatial + mlp adapter: 0.24 M trainable params" in capsys.readouterr().out
    assert main(["info", "model", "mvitv2_tiny", "--freeze", "spatial", "--adapter", "none"]) == 2
    assert "--freeze: mvitv2_tiny names no module groups to freeze" in capsys.readouterr().err
