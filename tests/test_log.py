"""The library logs what it used to print; deforum.log.show_progress_messages puts it on the screen."""

import io
import logging
import sys

import pytest
import torch

from deforum.log import HANDLER_NAME, hide_progress_messages, show_progress_messages


@pytest.fixture
def deforum_logger():
    logger = logging.getLogger("deforum")
    saved = logger.level
    yield logger
    hide_progress_messages()
    logger.setLevel(saved)


def ours(logger):
    return [h for h in logger.handlers if h.get_name() == HANDLER_NAME]


def test_info_is_the_bare_message_and_other_levels_say_level_and_logger(deforum_logger):
    out = io.StringIO()
    show_progress_messages(out)
    logging.getLogger("deforum.models.loader").info("Loaded %s on %s", "x.ckpt", "cpu")
    logging.getLogger("deforum.video").warning("careful")
    logging.getLogger("deforum.video").debug("not shown at INFO")
    assert out.getvalue().splitlines() == ["Loaded x.ckpt on cpu", "WARNING deforum.video: careful"]


def test_a_second_call_adjusts_the_one_handler(deforum_logger):
    first, second = io.StringIO(), io.StringIO()
    show_progress_messages(first)
    show_progress_messages(second, level=logging.DEBUG)
    assert len(ours(deforum_logger)) == 1
    logging.getLogger("deforum.x").debug("now shown")
    assert first.getvalue() == "" and second.getvalue() == "DEBUG deforum.x: now shown\n"
    show_progress_messages(second, level=logging.WARNING)
    logging.getLogger("deforum.x").info("hidden")
    assert "hidden" not in second.getvalue()
    hide_progress_messages()
    assert ours(deforum_logger) == []


def test_without_a_stream_it_follows_sys_stderr(deforum_logger, capsys):
    show_progress_messages()
    logging.getLogger("deforum.x").info("one")
    assert capsys.readouterr().err == "one\n"
    replaced = io.StringIO()
    real, sys.stderr = sys.stderr, replaced
    try:
        logging.getLogger("deforum.x").info("two")
    finally:
        sys.stderr = real
    assert replaced.getvalue() == "two\n"


def test_config_detection_is_logged_not_printed(caplog, capsys):
    from deforum.models import detect_config_name

    with caplog.at_level(logging.INFO, logger="deforum"):
        assert detect_config_name({"cond_stage_model.transformer.x": torch.empty(1, device="meta")}) == \
            "v1-inference.yaml"
    assert "model_config: detected v1-inference.yaml (CLIP ViT-L text encoder keys" in caplog.text
    assert capsys.readouterr() == ("", "")


def test_a_hub_download_is_logged_not_printed(caplog, capsys, monkeypatch, tmp_path):
    from deforum.models import download

    monkeypatch.setattr(download, "hub_unreachable", lambda endpoint=None: None)
    with caplog.at_level(logging.INFO, logger="deforum"):
        assert download.fetch_from_hub(lambda token: "done", what="sd.ckpt", repo_id="o/r", place=tmp_path,
                                       where="put it there") == "done"
    assert f"Downloading sd.ckpt from o/r to {tmp_path}" in caplog.messages
    assert capsys.readouterr() == ("", "")


def test_an_aesthetics_head_download_is_logged_not_printed(caplog, capsys, monkeypatch, tmp_path):
    from deforum.guidance import aesthetics

    filename, _, _ = aesthetics.head_entry("ViT-B/32")
    monkeypatch.setattr(aesthetics, "_download", lambda url, dest, sha256: dest.write_bytes(b""))
    with caplog.at_level(logging.INFO, logger="deforum"):
        assert aesthetics.head_path("ViT-B/32", tmp_path) == tmp_path / filename
    assert f"Downloading the aesthetics head {filename} to {tmp_path}" in caplog.messages
    assert capsys.readouterr() == ("", "")
