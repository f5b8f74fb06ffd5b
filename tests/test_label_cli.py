"""The labeling loop through the product CLI: `label queue`, `label import`, `nlp eval/train --reviewed`."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from sqlmodel import Session, select

from monitor.cli import main
from nlp.corpus import split_of
from storage.database import open_store
from storage.models import Annotation, HumanLabel, Post

POSTS = [
    ("1", "楽天証券の口座に不正ログインされて、保有株を全部売られて香港株を買われてた"),
    ("2", "今日はラーメン食べた。美味しかった"),
    ("3", "証券口座の乗っ取り被害が相次いでいるらしい。二段階認証を設定しよう"),
    ("4", "証券口座、なんか変な約定がある気がするけど自分の注文かも"),
    ("5", "SBI証券のアプリ、アップデートしたら見やすくなった"),
    ("6", "母のSBI証券の口座で、知らないうちに投信が全部解約されていた"),
    ("7", "明日の天気は晴れ。洗濯日和"),
    ("8", "楽天証券からログイン通知が来たけど自分だった"),
]


def _run(capsys, argv: list[str]) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def _store(tmp_path: Path, db_url: str, capsys) -> None:
    rows = [{"id": pid, "source": "x", "created_at": f"2025-03-21T0{i}:00:00+09:00", "author_id": f"u{pid}",
             "text": text} for i, (pid, text) in enumerate(POSTS)]  # fmt: skip
    path = tmp_path / "posts.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    assert _run(capsys, ["import", str(path), "--db", db_url])[0] == 0


def test_queue_import_and_eval_on_human_labels(tmp_path, db_url, capsys):
    _store(tmp_path, db_url, capsys)
    queue = tmp_path / "review.jsonl"
    code, _, err = _run(capsys, ["label", "queue", "--output", str(queue), "--least-sure", "3", "--random", "2",
                                 "--db", db_url])  # fmt: skip
    assert code == 0 and "3 least sure, 2 random" in err
    rows = [json.loads(line) for line in queue.read_text(encoding="utf-8").splitlines()]
    assert [r["reason"] for r in rows] == ["least_sure"] * 3 + ["random"] * 2
    assert len({r["id"] for r in rows}) == 5 and all(r["label"] == "" for r in rows)
    scores = [r["model_score"] for r in rows[:3]]
    assert scores == sorted(scores)  # least sure first
    with Session(open_store(db_url)) as session:
        others = [a.score for p, a in session.exec(select(Post, Annotation).join(Annotation)).all()
                  if p.key not in {r["id"] for r in rows[:3]}]  # fmt: skip
    assert len(others) == len(POSTS) - 3 and max(scores) <= min(others)

    # A person fills in labels: all but one row; one row has a bad label.
    truth = {"x:1": "victim_report", "x:2": "irrelevant", "x:3": "incident_discussion", "x:4": "irrelevant",
             "x:5": "irrelevant", "x:6": "victim_report", "x:7": "irrelevant", "x:8": "incident_discussion"}  # fmt: skip
    filled = [dict(r, label=truth[r["id"]]) for r in rows]
    filled[0]["label"] = ""
    filled[1]["label"] = "victim"
    answers = tmp_path / "answers.jsonl"
    answers.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in filled), encoding="utf-8")
    code, out, err = _run(capsys, ["label", "import", str(answers), "--labeler", "aiko", "--db", db_url])
    assert code == 1 and f"{answers}:2: label 'victim' is not one of" in err
    assert "stored 3 human labels (3 new or changed), 1 rows without a label skipped, 1 bad rows" in out

    # Importing the same file again changes nothing; re-classification never touches human labels.
    _run(capsys, ["label", "import", str(answers), "--labeler", "aiko", "--db", db_url])
    engine = open_store(db_url)
    with Session(engine) as session:
        humans = session.exec(select(HumanLabel)).all()
        session.exec(select(Annotation)).all()
    assert len(humans) == 3 and {h.labeler for h in humans} == {"aiko"}
    assert all(h.labeled_at.tzinfo is not None for h in humans)
    code, out, _ = _run(capsys, ["nlp", "eval", "--reviewed", "--db", db_url])
    assert code == 0 and "split: human-labeled stored posts  posts: 3" in out

    # Labeled posts leave the queue.
    code, out, _ = _run(capsys, ["label", "queue", "--least-sure", "10", "--random", "0", "--db", db_url])
    assert code == 0 and len(out.splitlines()) == len(POSTS) - 3


def test_csv_round_trip_and_an_unknown_post_is_a_line_error(tmp_path, db_url, capsys):
    _store(tmp_path, db_url, capsys)
    queue = tmp_path / "review.csv"
    assert _run(capsys, ["label", "queue", "--output", str(queue), "--least-sure", "2", "--random", "1",
                         "--db", db_url])[0] == 0  # fmt: skip
    with queue.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 3 and rows[0]["text"]
    for row in rows:
        row["label"] = "irrelevant"
        row["labeler"] = "ken"
        row["labeled_at"] = "2025-03-22T10:00:00+09:00"
    rows.append({**rows[0], "id": "x:999"})
    with queue.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=[*rows[0].keys()])
        writer.writeheader()
        writer.writerows(rows)
    code, out, err = _run(capsys, ["label", "import", str(queue), "--db", db_url])
    assert code == 1 and f"{queue}:5: no stored post 'x:999'" in err and "stored 3 human labels" in out
    with Session(open_store(db_url)) as session:
        assert {h.labeler for h in session.exec(select(HumanLabel)).all()} == {"ken"}


def test_eval_and_train_reviewed_without_labels_are_one_line_errors(tmp_path, sqlite_url, capsys):
    code, _, err = _run(capsys, ["nlp", "eval", "--reviewed", "--db", sqlite_url])
    assert code == 1 and "no store at" in err and err.count("\n") == 1  # a read never creates the store
    open_store(sqlite_url).dispose()
    code, _, err = _run(capsys, ["nlp", "eval", "--reviewed", "--db", sqlite_url])
    assert code == 1 and "no human labels stored yet" in err and err.count("\n") == 1


def test_train_reviewed_adds_the_human_labels_to_the_corpus(tmp_path, sqlite_url, capsys):
    _store(tmp_path, sqlite_url, capsys)
    answers = tmp_path / "answers.jsonl"
    answers.write_text("".join(json.dumps({"id": f"x:{pid}", "label": "irrelevant"}) + "\n" for pid, _ in POSTS),
                       encoding="utf-8")  # fmt: skip
    assert _run(capsys, ["label", "import", str(answers), "--labeler", "aiko", "--db", sqlite_url])[0] == 0
    corpus = Path(__file__).resolve().parents[1] / "nlp" / "corpus" / "x_01.jsonl"
    code, out, err = _run(capsys, ["nlp", "train", "--reviewed", "--candidates", "tfidf", "--corpus", str(corpus),
                                   "--output", str(tmp_path / "m"), "--db", sqlite_url])  # fmt: skip
    assert code == 0, err
    assert f"training with {len(POSTS)} human-labeled stored posts" in err
    code, _, err = _run(capsys, ["nlp", "train", "--candidates", "tfidf", "--corpus", str(corpus),
                                 "--output", str(tmp_path / "plain"), "--db", sqlite_url])  # fmt: skip
    assert code == 0, err
    with_humans, plain = (json.loads((tmp_path / d / "classifier.json").read_text(encoding="utf-8"))
                          for d in ("m", "plain"))  # fmt: skip
    added = sum(split_of(f"x:{pid}") in ("train", "dev") for pid, _ in POSTS)
    assert with_humans["train_posts"] + with_humans["dev_posts"] == plain["train_posts"] + plain["dev_posts"] + added
    assert with_humans["version"] != plain["version"]
