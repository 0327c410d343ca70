"""The command line end to end: help, caption (good and bad files), attention figures, evaluate --json, shapes export."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
import time

import pytest
from conftest import run_cli, square_on_grey
from PIL import Image

from captionlib.cli import main

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def good_image(path, colour=(200, 40, 40)) -> None:
    square_on_grey(colour).save(path)


def truncated_jpeg(path) -> None:
    whole = io.BytesIO()
    Image.new("RGB", (64, 64), (10, 120, 200)).save(whole, "JPEG")
    path.write_bytes(whole.getvalue()[: len(whole.getvalue()) // 2])


def blank_png_over(pixels: int, path) -> float:
    """A one-colour 1-bit PNG with more than `pixels` pixels: huge when decoded, a few KB on disk. Returns seconds."""
    began = time.perf_counter()
    side = int(pixels**0.5) + 1
    Image.new("1", (side, side)).save(path, compress_level=1)
    return time.perf_counter() - began


def test_module_help_exits_0(tmp_path):
    result = run_cli("--help", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    for command in ("train", "evaluate", "caption", "shapes"):
        assert command in result.stdout


def test_help_answers_without_importing_torch(tmp_path):
    """`captionlib --help` should be instant: torch and the models are imported only by the commands."""
    check = "import sys; from captionlib.cli import main\ntry: main(['caption', '--help'])\nexcept SystemExit: pass\n"
    check += "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'torchvision'))\n"
    check += "sys.exit(f'{len(heavy)} modules, e.g. {heavy[:3]}' if heavy else 0)"
    result = subprocess.run([sys.executable, "-c", check], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, f"imported by --help: {result.stderr[-300:]}"


@pytest.mark.parametrize("command", [["train"], ["evaluate"], ["caption"], ["shapes"], ["shapes", "export"]])
def test_subcommand_help_exits_0(command, capsys):
    with pytest.raises(SystemExit) as info:  # argparse ends --help with sys.exit(0)
        main([*command, "--help"])
    assert info.value.code == 0
    assert capsys.readouterr().out.startswith(f"usage: captionlib {' '.join(command)}")


def test_caption_good_bad_good(tmp_path, tiny_checkpoint):
    """The bad file gets one stderr line; both good files are still captioned; the exit status says one failed."""
    good, bad, good2 = tmp_path / "good.png", tmp_path / "bad.jpg", tmp_path / "good2.png"
    good_image(good)
    truncated_jpeg(bad)
    good_image(good2, (40, 40, 200))
    result = run_cli("caption", "--checkpoint", tiny_checkpoint, good, bad, good2, cwd=tmp_path)
    assert result.returncode != 0
    assert [line.split("\t")[0] for line in result.stdout.splitlines()] == [str(good), str(good2)]
    errors = result.stderr.strip().splitlines()
    assert len(errors) == 1 and str(bad) in errors[0], result.stderr


def test_caption_every_kind_of_bad_file_with_attention(tmp_path, tiny_checkpoint, capsys):
    """One line per bad file, figures only for the good ones, nothing half-written (main returns the exit status)."""
    images, figures = tmp_path / "images", tmp_path / "figures"
    images.mkdir()
    figures.mkdir()
    default_limit = Image.MAX_IMAGE_PIXELS  # Pillow's own default: these are genuinely that large
    bad = {
        "missing.png": "no such file",
        "notes.jpg": "not an image",
        "truncated.jpg": "cannot decode",
        "bomb.png": "decompression-bomb",  # over 2x the limit: Pillow raises
        "almost-bomb.png": "decompression-bomb",  # between 1x and 2x: Pillow only warns, we still refuse
    }
    (images / "notes.jpg").write_text("shopping list\n")
    truncated_jpeg(images / "truncated.jpg")
    seconds = blank_png_over(2 * default_limit, images / "bomb.png")
    seconds += blank_png_over(default_limit, images / "almost-bomb.png")
    assert seconds < 20 and (images / "bomb.png").stat().st_size < 1_000_000  # cheap to make, small on disk
    good_image(images / "first.png")
    good_image(images / "last.png", (40, 200, 40))
    order = ["first.png", *bad, "last.png"]

    argv = [
        "caption",
        "--checkpoint",
        str(tiny_checkpoint),
        "--attention",
        str(figures / "att.png"),
        *(str(images / n) for n in order),
    ]
    assert main(argv) == 1
    captured = capsys.readouterr()
    assert [line.split("\t")[0] for line in captured.out.splitlines()] == [str(images / "first.png"), str(images / "last.png")]
    errors = [line for line in captured.err.splitlines() if not line.startswith("attention figure:")]
    assert len(errors) == len(bad), captured.err
    for line, (name, reason) in zip(errors, bad.items()):
        assert line.startswith("captionlib: error: ") and str(images / name) in line and reason in line, line
    written = sorted(p.name for p in figures.iterdir())
    assert written == ["att-1.png", f"att-{len(order)}.png"]  # numbered by position; no figure, no temp file for bad ones
    for name in written:
        assert (figures / name).read_bytes().startswith(PNG_SIGNATURE)


def test_caption_odd_but_valid_images(tmp_path, tiny_checkpoint, capsys):
    paths = [tmp_path / n for n in ("rgba.png", "grey.png", "sixteen.png", "dot.png")]
    Image.new("RGBA", (30, 20), (255, 0, 0, 90)).save(paths[0])
    Image.new("L", (20, 30), 70).save(paths[1])
    Image.new("I;16", (16, 16), 40000).save(paths[2])
    Image.new("RGB", (1, 1), (0, 0, 255)).save(paths[3])
    assert main(["caption", "--checkpoint", str(tiny_checkpoint), *map(str, paths)]) == 0
    captured = capsys.readouterr()
    assert [line.split("\t")[0] for line in captured.out.splitlines()] == [str(p) for p in paths]
    assert captured.err == ""


def test_caption_attention_writes_a_png(tmp_path, tiny_checkpoint, capsys):
    image, figure = tmp_path / "good.png", tmp_path / "attention.png"
    good_image(image)
    assert (
        main(["caption", "--checkpoint", str(tiny_checkpoint), "--beam-size", "2", "--attention", str(figure), str(image)]) == 0
    )
    assert figure.read_bytes().startswith(PNG_SIGNATURE)
    with Image.open(figure) as written:
        written.verify()
    assert f"attention figure: {figure}" in capsys.readouterr().err


def test_failed_caption_attention_writes_no_figure(tmp_path, tiny_checkpoint, capsys):
    bad, figure = tmp_path / "bad.jpg", tmp_path / "attention.png"
    truncated_jpeg(bad)
    assert main(["caption", "--checkpoint", str(tiny_checkpoint), "--attention", str(figure), str(bad)]) == 1
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 1 and str(bad) in errors[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.jpg"]


@pytest.mark.parametrize(("name", "expected"), [("missing/attention.png", "no folder"), ("attention.xyz", "unknown figure format '.xyz'")])
def test_attention_path_that_cannot_be_written_is_refused_before_any_work(tmp_path, capsys, name, expected):
    """A typo in --attention used to surface after the first caption and stop the other images."""
    image = tmp_path / "good.png"
    good_image(image)
    out = tmp_path / name
    assert main(["caption", "--checkpoint", str(tmp_path / "never-loaded.pt"), "--attention", str(out), str(image)]) == 1
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 1 and errors[0].startswith(f"captionlib: error: --attention {out}: {expected}"), errors


def test_beam_size_must_be_positive(tmp_path, capsys):
    assert main(["caption", "--beam-size", "0", str(tmp_path / "any.png")]) == 1
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 1 and "--beam-size" in errors[0]


@pytest.mark.parametrize("max_len", ["0", "-1"])
def test_max_len_must_be_positive(tiny_checkpoint, capsys, max_len):
    assert main(["evaluate", "--checkpoint", str(tiny_checkpoint), "--max-len", max_len, "--beam-size", "1"]) == 1
    assert capsys.readouterr().err.strip().splitlines() == ["captionlib: error: --max-len must be at least 1"]


def test_file_system_errors_are_one_line_naming_the_path(tmp_path, capsys):
    occupied = tmp_path / "a-file"
    occupied.write_text("not a folder")
    assert main(["train", "--out", str(occupied), "--set", "shapes.n_train=16", "--no-progress"]) == 1
    assert main(["shapes", "export", str(occupied), "--n-train", "2", "--n-val", "1", "--n-test", "1"]) == 1
    assert capsys.readouterr().err.strip().splitlines() == [
        f"captionlib: error: {occupied}: File exists",
        f"captionlib: error: {occupied / 'Images'}: Not a directory",
    ]


def test_evaluate_json_is_one_object(tiny_checkpoint, capsys):
    assert main(["evaluate", "--checkpoint", str(tiny_checkpoint), "--beam-size", "3", "--json"]) == 0
    out = capsys.readouterr().out
    assert len(out.strip().splitlines()) == 1
    result = json.loads(out)
    assert isinstance(result, dict)
    scores = ("bleu1", "bleu2", "bleu3", "bleu4", "grounding", "grounding_chance", "hallucination")
    assert set(scores) <= set(result)
    for key in scores:
        assert 0.0 <= result[key] <= 1.0, (key, result[key])
    assert result["beam_size"] == 3 and result["split"] == "test"


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="checks the message on a machine without a GPU")
@pytest.mark.parametrize("command", ["caption", "evaluate"])
def test_device_cuda_without_a_gpu_is_a_one_line_error(tmp_path, tiny_checkpoint, capsys, command):
    image = tmp_path / "a.png"
    good_image(image)
    args = [str(image)] if command == "caption" else []
    assert main([command, "--checkpoint", str(tiny_checkpoint), "--device", "cuda", *args]) == 1
    captured = capsys.readouterr()
    errors = captured.err.strip().splitlines()
    assert errors == ["captionlib: error: --device: 'cuda' asked for but torch sees no GPU"] and not captured.out


def test_shapes_export_writes_the_flickr8k_layout(tmp_path, capsys):
    out = tmp_path / "export"
    n_train, n_val, n_test = 6, 2, 3
    argv = [
        "shapes",
        "export",
        str(out),
        "--n-train",
        str(n_train),
        "--n-val",
        str(n_val),
        "--n-test",
        str(n_test),
        "--seed",
        "3",
    ]
    assert main(argv) == 0
    images = sorted(p.name for p in (out / "Images").iterdir())
    assert len(images) == n_train + n_val + n_test
    with open(out / "captions.txt", newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["image", "caption"]
    captioned = {name for name, caption in rows[1:] if caption.strip()}
    assert captioned == set(images)  # every caption names a written image, every image has a caption
    for name in images[:2]:
        with Image.open(out / "Images" / name) as image:
            image.verify()
    assert str(out / "captions.txt") in capsys.readouterr().out
