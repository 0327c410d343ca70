"""Real data loaders: every supported on-disk format, every kind of bad row, strict vs default, and the CLI end to end."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import run_cli
from fixtures import (
    BAD_IMAGE_KINDS,
    append_lines,
    captions_for,
    flickr_name,
    karpathy_entries,
    write_bad_image,
    write_flickr30k_csv,
    write_image,
    write_kaggle,
    write_kaggle_photos,
    write_karpathy,
    write_split_lists,
    write_token,
)

import captionlib.rows
from captionlib.cli import main
from captionlib.config import Config
from captionlib.data import ImageRecord
from captionlib.flickr import load_flickr
from captionlib.images import check_image
from captionlib.sources import (
    BLANK_CAPTION,
    DUPLICATE_CAPTION,
    DUPLICATE_IMAGE,
    EMPTY_IMAGE,
    MALFORMED,
    MISSING_IMAGE,
    NO_CAPTIONS,
    NOT_AN_IMAGE,
    UNDECODABLE_IMAGE,
    UNREADABLE_IMAGE,
    UNSAFE_PATH,
    load_splits,
    read_dataset,
)

# Each kind of bad image file the fixtures write: the reason its rows are skipped, and the words that say why.
BAD_IMAGE_REASONS = {
    "truncated": (UNDECODABLE_IMAGE, "cannot decode image ("),  # then Pillow's words, which vary by version
    "empty": (EMPTY_IMAGE, "empty file (0 bytes)"),
    "text": (NOT_AN_IMAGE, "not an image Pillow can read"),
    "unreadable": (UNREADABLE_IMAGE, "cannot read the file (Permission denied)"),
}
assert tuple(BAD_IMAGE_REASONS) == BAD_IMAGE_KINDS
# root reads a file whatever its permissions, so there an "unreadable" file is a good photograph
ROOT_READS_ALL = "running as root, which reads any file whatever its permissions" if os.name == "posix" and os.geteuid() == 0 else ""
BAD_KINDS_HERE = tuple(kind for kind in BAD_IMAGE_KINDS if kind != "unreadable" or not ROOT_READS_ALL)


def split_names(splits) -> dict[str, list[str]]:
    """{split: [image file names]} to compare with what the fixture wrote."""
    return {name: [r.path.name for r in split.images] for name, split in splits.items()}


def check_records(splits, captions: dict[str, list[str]]) -> None:
    """Every record points at an existing file and carries exactly the captions written for it."""
    for split in splits.values():
        assert split.captions == [r.captions for r in split.images]
        for record in split.images:
            assert isinstance(record, ImageRecord) and record.path.is_file()
            assert record.captions == captions[record.path.name]


# --- each format, read through read_dataset (what load_splits calls) ---------------------------------------------------


def test_kaggle_layout_with_official_split_lists(tmp_path):
    captions = write_kaggle(tmp_path)
    splits, report = read_dataset(tmp_path)
    names = list(captions)
    assert report.format == "kaggle" and report.skipped == [] and report.unused == []
    assert split_names(splits) == {"train": names[:6], "val": names[6:8], "test": names[8:]}
    check_records(splits, captions)
    commas = [c for caps in splits["train"].captions for c in caps if "," in c]
    assert "A girl in a pink shirt, jeans and sneakers is jumping on a trampoline ." in commas  # unquoted comma kept


def test_kaggle_quoted_captions_are_unquoted(tmp_path):
    write_kaggle(tmp_path)
    name = flickr_name(1)
    append_lines(tmp_path / "captions.txt", f'{name},"A dog, wet, shakes itself ."', f'{name},"He says ""hi"" ."')
    splits, report = read_dataset(tmp_path)
    (record,) = [r for split in splits.values() for r in split.images if r.path.name == name]
    assert record.captions[-2:] == ["A dog, wet, shakes itself .", 'He says "hi" .']
    assert report.skipped == []


def test_kaggle_layout_without_lists_gets_a_seeded_split(tmp_path):
    captions = write_kaggle(tmp_path / "kaggle", n=24, lists=False)
    splits, report = read_dataset(tmp_path / "kaggle")
    sizes = {name: len(split) for name, split in splits.items()}
    assert sizes == {"train": 18, "val": 3, "test": 3}  # min(1000, 24 // 8) held out for val and for test
    assert sorted(n for names in split_names(splits).values() for n in names) == sorted(captions)
    assert "seeded" in report.split_rule
    again, _ = read_dataset(tmp_path / "kaggle")
    assert split_names(again) == split_names(splits)
    # The same image names in another layout (original token file, other folder) land in the same splits.
    token_root = tmp_path / "original"
    for i, name in enumerate(captions):
        write_image(token_root / "Flicker8k_Dataset" / name, i)
    lines = [f"{name}#{k}\t{c}\n" for name, caps in captions.items() for k, c in enumerate(caps)]
    (token_root / "Flickr8k.token.txt").write_text("".join(lines))
    assert split_names(read_dataset(token_root)[0]) == split_names(splits)


def test_kaggle_lists_in_flickr8k_text_folder(tmp_path):
    captions = write_kaggle(tmp_path, lists=False)
    lists = write_split_lists(tmp_path / "Flickr8k_text", list(captions), n_val=3, n_test=1)
    splits, report = read_dataset(tmp_path)
    assert split_names(splits) == lists and "Flickr8k_text" in report.split_rule


def test_original_flickr8k_token_file(tmp_path):
    captions = write_token(tmp_path)
    splits, report = read_dataset(tmp_path)
    names = list(captions)
    assert report.format == "token" and report.source == tmp_path / "Flickr8k_text" / "Flickr8k.token.txt"
    assert split_names(splits) == {"train": names[:6], "val": names[6:8], "test": names[8:]}
    assert all(r.path.parent.name == "Flicker8k_Dataset" for split in splits.values() for r in split.images)
    check_records(splits, captions)
    assert split_names(read_dataset(report.source)[0]) == split_names(splits)  # the file itself works as --data too


def test_flickr30k_token_file(tmp_path):
    captions = write_token(tmp_path, n=16, flickr30k=True)
    splits, report = read_dataset(tmp_path)
    assert report.source.name == "results_20130124.token" and report.skipped == []
    assert {name: len(split) for name, split in splits.items()} == {"train": 12, "val": 2, "test": 2}
    check_records(splits, captions)


def test_flickr30k_kaggle_results_csv(tmp_path):
    captions = write_flickr30k_csv(tmp_path, n=16)
    splits, report = read_dataset(tmp_path / "flickr30k_images")
    assert report.format == "results_csv" and report.source.name == "results.csv" and report.skipped == []
    assert {name: len(split) for name, split in splits.items()} == {"train": 12, "val": 2, "test": 2}  # seeded split
    assert all(r.path.parent == tmp_path / "flickr30k_images" / "flickr30k_images" for s in splits.values() for r in s.images)
    check_records(splits, captions)  # the pipes' padding spaces are not part of names or captions


def test_karpathy_flickr8k_json(tmp_path):
    names = [flickr_name(i) for i in range(6)]
    path = write_karpathy(tmp_path, karpathy_entries(names, ["train", "train", "restval", "val", "test", "test"]))
    splits, report = read_dataset(tmp_path)
    assert report.format == "karpathy" and report.skipped == []
    assert split_names(splits) == {"train": names[:3], "val": names[3:4], "test": names[4:]}  # restval -> train
    check_records(splits, captions_for(names))
    splits, report = read_dataset(path, restval_to_train=False)
    assert split_names(splits)["train"] == names[:2] and report.unused == [f"Images/{names[2]}"]


def test_karpathy_coco_json_with_filepaths(tmp_path):
    names = [f"COCO_{folder}_{i:012d}.jpg" for i, folder in enumerate(["train2014"] * 3 + ["val2014"] * 3)]
    folders = [name.split("_")[1] for name in names]
    entries = karpathy_entries(names, ["train", "train", "train", "restval", "val", "test"], folders)
    write_karpathy(tmp_path, entries, "dataset_coco.json")
    splits, report = read_dataset(tmp_path)
    assert report.skipped == [] and report.rows == 18
    assert split_names(splits) == {"train": names[:4], "val": names[4:5], "test": names[5:]}
    assert [r.path.parent.name for r in splits["train"].images] == folders[:4]
    check_records(splits, captions_for(names))


def test_load_splits_and_load_flickr_read_a_shapes_export(tmp_path, capsys):
    assert main(["shapes", "export", str(tmp_path), "--n-train", "5", "--n-val", "2", "--n-test", "2"]) == 0
    splits = load_splits(Config(data=str(tmp_path)))
    assert {name: len(split) for name, split in splits.items()} == {"train": 5, "val": 2, "test": 2}
    assert split_names(load_flickr(tmp_path)) == split_names(splits)
    assert "official split lists" in capsys.readouterr().err


# --- bad rows: one test per case, FILE:LINE in the message, strict raises exactly that line ----------------------------


def one_line(text: str) -> str:
    """The one line of a command's stderr."""
    lines = text.splitlines()
    assert len(lines) == 1, text
    return lines[0]


def only_bad_row(data_path: Path, reason: str):
    """The single skipped row of a data set, after checking that strict mode raises the same one-line message."""
    splits, report = read_dataset(data_path)
    assert [bad.reason for bad in report.skipped] == [reason], report.skipped
    (bad,) = report.skipped
    with pytest.raises(ValueError) as raised:
        read_dataset(data_path, strict=True)
    assert str(raised.value) == str(bad) and "\n" not in str(bad)
    return bad, splits


KAGGLE_BAD_LINES = [
    ("missing image", "1999999999_0123456789.jpg,A dog runs across the sand .", MISSING_IMAGE, "does not exist"),
    ("blank caption", f"{flickr_name(1)}, . ", BLANK_CAPTION, "no words"),
    ("duplicate", f"{flickr_name(1)},a black dog and a spotted dog are FIGHTING !", DUPLICATE_CAPTION, "captions.txt:5"),
    ("parent dir", "../outside.jpg,A cat sleeps on a sofa .", UNSAFE_PATH, "'../outside.jpg' points outside"),
    ("absolute", "/tmp/outside.jpg,A cat sleeps on a sofa .", UNSAFE_PATH, "'/tmp/outside.jpg' points outside"),
    ("windows drive", "C:\\data\\outside.jpg,A cat sleeps on a sofa .", UNSAFE_PATH, "points outside"),
    ("no comma", "1000268201_693b08cb0e.jpg A child climbs the stairs .", MALFORMED, "expected IMAGE,CAPTION"),
]


@pytest.mark.parametrize(("case", "line", "reason", "detail"), KAGGLE_BAD_LINES, ids=[c[0] for c in KAGGLE_BAD_LINES])
def test_kaggle_bad_row(tmp_path, case, line, reason, detail):
    captions = write_kaggle(tmp_path / "data")
    write_image(tmp_path / "outside.jpg", 0)  # exists, so only the name check can refuse it
    number = append_lines(tmp_path / "data" / "captions.txt", line)
    bad, splits = only_bad_row(tmp_path / "data", reason)
    assert bad.where == f"{tmp_path / 'data' / 'captions.txt'}:{number}" and detail in bad.detail
    check_records(splits, captions)  # every good row is still there, nothing else changed


def test_kaggle_line_that_is_not_utf8_is_reported_and_the_rest_load(tmp_path):
    captions = write_kaggle(tmp_path / "data")
    path = tmp_path / "data" / "captions.txt"
    number = append_lines(path, f"{flickr_name(1)},A man sits in a PLACEHOLDER .")
    path.write_bytes(path.read_bytes().replace(b"PLACEHOLDER", b"caf\xe9"))  # Latin-1, as an old editor would save it
    bad, splits = only_bad_row(tmp_path / "data", MALFORMED)
    assert bad.where == f"{path}:{number}" and bad.detail == "not UTF-8 text (byte 0xe9)"
    check_records(splits, captions)


def test_image_name_that_is_not_utf8_is_reported_in_a_seeded_split(tmp_path):
    captions = write_kaggle(tmp_path / "data", lists=False)
    path = tmp_path / "data" / "captions.txt"
    number = append_lines(path, "PLACEHOLDER.jpg,A dog runs across the sand .")
    path.write_bytes(path.read_bytes().replace(b"PLACEHOLDER", b"caf\xe9"))
    bad, splits = only_bad_row(tmp_path / "data", MALFORMED)
    assert bad.where == f"{path}:{number}" and bad.detail == "not UTF-8 text (byte 0xe9)"
    check_records(splits, captions)


def test_seeded_split_holds_when_an_image_goes_missing(tmp_path):
    """Split boundaries count every image the caption file names, so losing one file moves no other image."""
    write_kaggle(tmp_path / "data", n=40, lists=False)
    before = split_names(read_dataset(tmp_path / "data")[0])
    lost = before["val"][0]  # a held-out image: in the old rule every image after it in hash order moved up one place
    (tmp_path / "data" / "Images" / lost).unlink()
    after, report = read_dataset(tmp_path / "data")
    assert {bad.reason for bad in report.skipped} == {MISSING_IMAGE}
    assert split_names(after) == {name: [n for n in names if n != lost] for name, names in before.items()}


TOKEN_BAD_LINES = [
    ("no tab", f"{flickr_name(2)}#3 A dog jumps over a log .", "no tab"),
    ("no #n", f"{flickr_name(2)}\tA dog jumps over a log .", "expected NAME#N"),
    ("#x", f"{flickr_name(2)}#x\tA dog jumps over a log .", "expected NAME#N"),
]


RESULTS_CSV_BAD_LINES = [
    # Kaggle's results.csv really holds this line (19999): the '|' after the comment number is missing.
    ("no second pipe", "1000092795.jpg| 4 A dog runs across the grass .", "expected NAME| N| CAPTION"),
    ("number not a digit", "1000092795.jpg| four| A dog runs across the grass .", "expected NAME| N| CAPTION"),
]


@pytest.mark.parametrize(("case", "line", "detail"), RESULTS_CSV_BAD_LINES, ids=[c[0] for c in RESULTS_CSV_BAD_LINES])
def test_results_csv_malformed_line(tmp_path, case, line, detail):
    captions = write_flickr30k_csv(tmp_path)
    results = tmp_path / "flickr30k_images" / "results.csv"
    number = append_lines(results, line)
    bad, splits = only_bad_row(tmp_path / "flickr30k_images", MALFORMED)
    assert bad.where == f"{results}:{number}" and detail in bad.detail
    check_records(splits, captions)


def test_results_csv_wrong_header(tmp_path):
    write_flickr30k_csv(tmp_path)
    results = tmp_path / "flickr30k_images" / "results.csv"
    results.write_text(results.read_text().replace("comment_number", "number", 1))
    with pytest.raises(ValueError, match=r"results\.csv:1: expected the header 'image_name\| comment_number\| comment'"):
        read_dataset(results)


@pytest.mark.parametrize(("case", "line", "detail"), TOKEN_BAD_LINES, ids=[c[0] for c in TOKEN_BAD_LINES])
def test_token_file_malformed_line(tmp_path, case, line, detail):
    write_token(tmp_path)
    token_file = tmp_path / "Flickr8k_text" / "Flickr8k.token.txt"
    number = append_lines(token_file, line)
    bad, _ = only_bad_row(tmp_path, MALFORMED)
    assert bad.where == f"{token_file}:{number}" and detail in bad.detail


def test_karpathy_entry_missing_key(tmp_path):
    names = [flickr_name(i) for i in range(5)]
    entries = karpathy_entries(names, ["train", "train", "val", "test", "train"])
    del entries[4]["sentences"]
    path = write_karpathy(tmp_path, entries)
    bad, _ = only_bad_row(tmp_path, MALFORMED)
    assert str(bad) == f"{path}: entry 4 ({names[4]}): malformed: missing key 'sentences'"


def test_karpathy_json_with_a_bom_loads_and_broken_json_names_file_and_line(tmp_path):
    names = [flickr_name(i) for i in range(4)]
    path = write_karpathy(tmp_path, karpathy_entries(names, ["train", "train", "val", "test"]))
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())  # Windows editors save one
    assert split_names(read_dataset(tmp_path)[0]) == {"train": names[:2], "val": names[2:3], "test": names[3:]}
    path.write_text('{"images": [\n  {"filename": "a.jpg",}\n]}\n', encoding="utf-8")
    with pytest.raises(ValueError, match=rf"^{re.escape(str(path))}:2: not valid JSON \(Expecting property name"):
        read_dataset(tmp_path)


def test_karpathy_sentence_without_raw(tmp_path):
    names = [flickr_name(i) for i in range(4)]
    entries = karpathy_entries(names, ["train", "val", "test", "train"])
    entries[3]["sentences"][1] = {"tokens": ["a", "dog"]}
    path = write_karpathy(tmp_path, entries)
    bad, splits = only_bad_row(tmp_path, MALFORMED)
    assert bad.where == f"{path}: entry 3 ({names[3]}) sentence 1"
    assert len(splits["train"].captions[1]) == 2  # the image keeps its two good captions


def test_karpathy_coco_filepath_escaping_root(tmp_path):
    names = ["COCO_train2014_000000000009.jpg", "COCO_val2014_000000000042.jpg", "COCO_val2014_000000000073.jpg"]
    entries = karpathy_entries(names, ["train", "val", "test"], ["train2014", "val2014", "val2014"])
    entries.append(karpathy_entries(["COCO_val2014_000000000074.jpg"], ["train"], ["../val2014"])[0])
    path = write_karpathy(tmp_path, entries, "dataset_coco.json")
    splits, report = read_dataset(tmp_path)
    assert [str(b) for b in report.skipped] == [
        f"{path}: entry 3 (COCO_val2014_000000000074.jpg) sentence {j}: unsafe path: "
        f"folder '../val2014' points outside {tmp_path}"
        for j in range(3)
    ]
    assert [len(s) for s in splits.values()] == [1, 1, 1]


def test_karpathy_entry_whose_image_is_truncated(tmp_path):
    names = [flickr_name(i) for i in range(4)]
    path = write_karpathy(tmp_path, karpathy_entries(names, ["train", "val", "test", "train"]))
    write_bad_image(tmp_path / "Images" / names[3], "truncated")
    splits, report = read_dataset(tmp_path)
    assert [b.where for b in report.skipped] == [f"{path}: entry 3 ({names[3]}) sentence {j}" for j in range(3)]
    assert report.counts() == {UNDECODABLE_IMAGE: 3} and report.files() == {UNDECODABLE_IMAGE: 1}
    assert split_names(splits) == {"train": names[:1], "val": names[1:2], "test": names[2:3]}


def test_image_whose_captions_are_all_bad_is_dropped_and_reported(tmp_path):
    captions = write_kaggle(tmp_path)
    name = flickr_name(9, ".png")  # a test image
    lines = (tmp_path / "captions.txt").read_text().splitlines()
    kept = [line for line in lines if not line.startswith(name)]
    (tmp_path / "captions.txt").write_text("\n".join(kept) + "\n")
    first = append_lines(tmp_path / "captions.txt", f"{name},", f"{name},  ...  ")
    splits, report = read_dataset(tmp_path)
    assert [(b.where.rsplit(":", 1)[-1], b.reason) for b in report.skipped] == [
        (str(first), BLANK_CAPTION),
        (str(first + 1), BLANK_CAPTION),
        ("2", NO_CAPTIONS),  # line 2 of the test list
    ]
    assert report.skipped[-1].where == f"{tmp_path / 'Flickr_8k.testImages.txt'}:2"
    assert "every caption of it was skipped" in report.skipped[-1].detail
    assert split_names(splits)["test"] == [flickr_name(8)]
    check_records(splits, captions)


def test_listed_image_without_caption_rows_and_unlisted_images(tmp_path, capsys):
    write_kaggle(tmp_path, n=12, lists=False)
    names = [flickr_name(i, ".png" if i % 3 == 0 else ".jpg") for i in range(12)]
    lists = write_split_lists(tmp_path, names[:10] + ["2258277193_586949ec62.jpg"], n_val=2, n_test=3)
    splits, report = read_dataset(tmp_path)
    (bad,) = report.skipped
    assert str(bad) == f"{tmp_path / 'Flickr_8k.testImages.txt'}:3: no captions: Images/2258277193_586949ec62.jpg: no caption row names it"
    assert report.unused == sorted(f"Images/{n}" for n in names[10:])  # captioned but in no list: reported, not used
    assert split_names(splits)["test"] == lists["test"][:2]
    load_splits(Config(data=str(tmp_path)))
    err = capsys.readouterr().err
    assert "skipped 1 rows: no captions 1" in err and str(bad) in err and "2 images with captions are in no split" in err


def test_default_mode_prints_counts_and_first_examples_strict_stops(tmp_path, capsys):
    write_kaggle(tmp_path)
    name = flickr_name(0, ".png")
    first = append_lines(
        tmp_path / "captions.txt",
        "1999999999_0123456789.jpg,A dog runs across the sand .",
        "1999999999_0123456789.jpg,A brown dog runs along the beach .",
        f"{name},",
        "garbage line without a comma",
    )
    splits = load_splits(Config(data=str(tmp_path)))
    err = capsys.readouterr().err
    assert "skipped 4 rows: missing image 2 (1 file), blank caption 1, malformed 1; --strict makes the first an error" in err
    file = tmp_path / "captions.txt"
    for number, reason in ((first, MISSING_IMAGE), (first + 2, BLANK_CAPTION), (first + 3, MALFORMED)):
        assert f"captionlib:   {file}:{number}: {reason}: " in err  # the first example of each reason
    assert f"{file}:{first + 1}:" not in err  # only the first of each reason is shown
    assert sum(len(s) for s in splits.values()) == 10
    with pytest.raises(ValueError, match=re.escape(f"{file}:{first}: missing image: ")):
        load_splits(Config(data=str(tmp_path)), strict=True)


# --- bad image files: found when the split is read, reported like bad rows, skipped with their captions -------------------


@pytest.mark.parametrize("kind", BAD_IMAGE_KINDS)
def test_bad_image_file_skips_its_captions_and_strict_names_it(tmp_path, kind):
    if kind == "unreadable" and ROOT_READS_ALL:
        pytest.skip(ROOT_READS_ALL)
    captions, bad = write_kaggle_photos(tmp_path, bad=[kind])
    path, (reason, why) = tmp_path / "Images" / bad[kind], BAD_IMAGE_REASONS[kind]
    splits, report = read_dataset(tmp_path)
    lines = [str(b) for b in report.skipped]
    assert len(lines) == 3 and report.counts() == {reason: 3} and report.files() == {reason: 1}  # one file, its 3 captions
    for line, number in zip(lines, (62, 63, 64)):  # after the 20 good photographs' 60 rows and the header
        assert line.startswith(f"{tmp_path / 'captions.txt'}:{number}: {reason}: {path}: {why}"), line
    check_records(splits, captions)  # every good photograph is there with its captions, the bad file is not
    assert sum(len(split) for split in splits.values()) == len(captions)
    with pytest.raises(ValueError) as raised:
        read_dataset(tmp_path, strict=True)
    assert str(raised.value) == lines[0] and "\n" not in lines[0]


def test_bad_image_files_are_summarised_by_cause_each_checked_once(tmp_path, capsys, monkeypatch):
    captions, bad = write_kaggle_photos(tmp_path, bad=BAD_KINDS_HERE)
    checked = []
    monkeypatch.setattr(captionlib.rows, "check_image", lambda path: checked.append(path) or check_image(path))
    splits = load_splits(Config(data=str(tmp_path)))
    assert sorted(checked) == sorted(tmp_path / "Images" / name for name in [*captions, *bad.values()])  # once each
    err = capsys.readouterr().err.splitlines()
    n = len(BAD_KINDS_HERE)
    causes = ", ".join(f"{BAD_IMAGE_REASONS[kind][0]} 3 (1 file)" for kind in BAD_KINDS_HERE)
    assert err[1] == f"captionlib: skipped {3 * n} rows: {causes}; --strict makes the first an error; first of each:"
    file = tmp_path / "captions.txt"
    for k, kind in enumerate(BAD_KINDS_HERE):  # the first row of each cause: FILE:LINE, the cause, the image file, why
        reason, why = BAD_IMAGE_REASONS[kind]
        assert err[2 + k].startswith(f"captionlib:   {file}:{62 + 3 * k}: {reason}: {tmp_path / 'Images' / bad[kind]}: {why}")
    assert len(err) == 2 + n  # and nothing more: the other rows of each file are counted, not listed
    check_records(splits, captions)
    assert sum(len(split) for split in splits.values()) == len(captions) and all(splits.values())


def test_image_in_two_split_lists(tmp_path):
    captions = write_kaggle(tmp_path)
    number = append_lines(tmp_path / "Flickr_8k.testImages.txt", flickr_name(1))  # also in the train list
    bad, splits = only_bad_row(tmp_path, DUPLICATE_IMAGE)
    assert bad.where == f"{tmp_path / 'Flickr_8k.testImages.txt'}:{number}"
    assert bad.detail == f"Images/{flickr_name(1)} is already in {tmp_path / 'Flickr_8k.trainImages.txt'}:2"
    check_records(splits, captions)


def test_a_split_left_empty_is_an_error(tmp_path):
    write_kaggle(tmp_path, n=2, lists=False)  # a seeded split of 2 images: 1 val, 1 test, no train
    with pytest.raises(ValueError, match="the train split has no usable images"):
        load_splits(Config(data=str(tmp_path)))


# --- finding the caption file --------------------------------------------------------------------------------------------


def test_folder_with_two_caption_files_or_none_is_an_error(tmp_path):
    write_kaggle(tmp_path)
    write_karpathy(tmp_path, karpathy_entries([flickr_name(0)], ["train"]))
    with pytest.raises(ValueError, match="several caption files"):
        read_dataset(tmp_path)
    assert read_dataset(tmp_path / "captions.txt")[1].format == "kaggle"  # naming the file settles it
    assert read_dataset(tmp_path, format="kaggle")[1].format == "kaggle"
    with pytest.raises(ValueError, match="no caption file"):
        read_dataset(tmp_path / "Images")
    with pytest.raises(FileNotFoundError, match="no such data folder"):
        read_dataset(tmp_path / "nowhere")


def test_wrong_header_and_missing_image_folder(tmp_path):
    write_kaggle(tmp_path)
    (tmp_path / "captions.txt").write_text("filename,text\nx.jpg,A dog .\n")
    with pytest.raises(ValueError, match=r"captions.txt:1: expected the header 'image,caption'"):
        read_dataset(tmp_path)
    (tmp_path / "Images").rename(tmp_path / "pictures")
    with pytest.raises(ValueError, match="no image folder"):
        read_dataset(tmp_path)


# --- the command line ------------------------------------------------------------------------------------------------------

THIS_TREE_FIRST = os.pathsep.join(filter(None, [str(Path(__file__).parent.parent), os.environ.get("PYTHONPATH")]))
TINY = ["model.embed_dim=16", "model.attention_dim=16", "model.decoder_dim=32", "model.encoder_channels=32", "train.batch_images=8"]


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::UserWarning:nltk.translate.bleu_score")  # nltk, about a one-epoch model's BLEU
def test_cli_trains_and_evaluates_on_a_kaggle_folder(tmp_path, capsys):
    data = tmp_path / "flickr8k"
    write_kaggle(data, n=12)
    bad_line = append_lines(data / "captions.txt", "1999999999_0123456789.jpg,A dog runs across the sand .")
    sets = [arg for s in TINY for arg in ("--set", s)]
    env = {**os.environ, "PYTHONPATH": THIS_TREE_FIRST}
    command = [sys.executable, "-m", "captionlib", "train", "--data", str(data), "--out", str(tmp_path / "run"), "--epochs", "1"]
    done = subprocess.run([*command, "--no-progress", *sets], check=False, capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "skipped 1 rows: missing image 1" in done.stderr and "8 training images" in done.stdout
    best = tmp_path / "run" / "best.pt"
    # evaluate in this process: one subprocess is enough to show the installed command works end to end
    assert main(["evaluate", "--checkpoint", str(best), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["images"] == 2 and 0.0 <= result["bleu4"] <= 1.0 and "grounding" not in result  # real data: BLEU only
    assert main(["evaluate", "--checkpoint", str(best), "--strict"]) == 1
    error = capsys.readouterr().err.strip().splitlines()
    assert error == [f"captionlib: error: {data / 'captions.txt'}:{bad_line}: missing image: {data / 'Images' / '1999999999_0123456789.jpg'} does not exist"]


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::UserWarning:nltk.translate.bleu_score")  # nltk, about a one-epoch model's BLEU
def test_cli_trains_evaluates_and_captions_past_bad_image_files(tmp_path, capsys):
    """Photographs with a truncated JPEG, an empty file and a text file among them: each command skips or reports them."""
    data = tmp_path / "flickr8k"
    captions, bad = write_kaggle_photos(data, bad=["truncated", "empty", "text"])
    broken = data / "Images" / bad["truncated"]
    sizes = {name: len(split) for name, split in read_dataset(data)[0].items()}
    assert sum(sizes.values()) == len(captions) == 20  # every photograph, none of the bad files
    first_bad = f"{data / 'captions.txt'}:62: undecodable image: {broken}: cannot decode image ("
    train = ["train", "--data", data, "--out", tmp_path / "run", "--epochs", "1", "--no-progress", *(a for s in TINY for a in ("--set", s))]
    done = run_cli(*train, env={"PYTHONPATH": THIS_TREE_FIRST, "OMP_NUM_THREADS": "1"}, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "skipped 9 rows: undecodable image 3 (1 file), empty image 3 (1 file), not an image 3 (1 file);" in done.stderr
    assert f"captionlib:   {first_bad}" in done.stderr and f"{sizes['train']} training images" in done.stdout
    best = tmp_path / "run" / "best.pt"

    assert main([*map(str, train), "--strict"]) == 1  # stops while reading the split, before training
    assert one_line(capsys.readouterr().err).startswith(f"captionlib: error: {first_bad}")

    assert main(["evaluate", "--checkpoint", str(best), "--json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["images"] == sizes["test"] and f"captionlib:   {first_bad}" in captured.err
    assert main(["evaluate", "--checkpoint", str(best), "--strict"]) == 1
    assert one_line(capsys.readouterr().err).startswith(f"captionlib: error: {first_bad}")

    good = data / "Images" / flickr_name(0)
    assert main(["caption", "--checkpoint", str(best), str(good), str(broken), str(good)]) == 1  # the good ones still captioned
    captured = capsys.readouterr()
    assert [line.split("\t")[0] for line in captured.out.splitlines()] == [str(good), str(good)]
    assert one_line(captured.err).startswith(f"captionlib: error: {broken}: cannot decode image (")
