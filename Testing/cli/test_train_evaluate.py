"""The ``train`` and ``evaluate`` commands list the models and check their input."""

from __future__ import annotations


def test_train_and_evaluate_commands_are_listed_and_check_their_input(capsys, tmp_path):
    from SpineAssistLib.cli import main

    assert main(["train", "--list"]) == 0
    assert "ax_msu_pose" in capsys.readouterr().out
    assert main(["train", "nope", "--data", str(tmp_path)]) == 2
    assert "no model named 'nope'" in capsys.readouterr().err
    assert main(["train", "ax_msu_pose", "--data", str(tmp_path)]) == 2
    assert "holds no training set for ax_msu_pose" in capsys.readouterr().err
    assert main(["train", "sag_pfirrmann_cls", "--data", str(tmp_path), "--phantoms", "2",
                 "--pfirrmann-brightness", "1.3", "0.7"]) == 2
    assert "--pfirrmann-brightness needs 0 < LOW <= HIGH" in capsys.readouterr().err
    assert main(["train", "sag_pfirrmann_cls", "--data", str(tmp_path), "--phantoms", "2", "--tissue-jitter", "0"]) == 2
    assert "--tissue-jitter needs 0 < S <= 1" in capsys.readouterr().err
    assert main(["evaluate", "--studies", "0"]) == 2
    assert "--studies must be 1 or more" in capsys.readouterr().err
