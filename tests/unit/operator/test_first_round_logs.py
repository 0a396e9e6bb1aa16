"""An API's log an inferd of the first round wrote (``logs/<api>.log``) moves to its deployment's."""

from __future__ import annotations

from pathlib import Path

from inferd.operator.logs import adopt_first_round_log


def test_the_first_round_log_and_its_rotated_files_move_to_the_deployment_s(tmp_path: Path) -> None:
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "classifier.log").write_text("newest\n")
    (tmp_path / "logs" / "classifier.log.1").write_text("older\n")
    adopt_first_round_log(tmp_path, "iris/classifier")
    assert (tmp_path / "logs" / "iris" / "classifier.log").read_text() == "newest\n"
    assert (tmp_path / "logs" / "iris" / "classifier.log.1").read_text() == "older\n"
    assert sorted(path.name for path in (tmp_path / "logs").iterdir()) == ["iris"]


def test_a_name_a_deployment_has_a_log_of_keeps_the_first_round_log_where_it_is(tmp_path: Path) -> None:
    # upgraded through an inferd that left the old file and wrote logs/iris/classifier.log: the
    # old file is iris's, not that of a deployment 'garden' that took the name later
    (tmp_path / "logs" / "iris").mkdir(parents=True)
    (tmp_path / "logs" / "iris" / "classifier.log").write_text("since\n")
    (tmp_path / "logs" / "classifier.log").write_text("before\n")
    adopt_first_round_log(tmp_path, "garden/classifier")
    adopt_first_round_log(tmp_path, "iris/classifier")
    assert (tmp_path / "logs" / "classifier.log").read_text() == "before\n"
    assert not (tmp_path / "logs" / "garden").exists()
    assert (tmp_path / "logs" / "iris" / "classifier.log").read_text() == "since\n"
