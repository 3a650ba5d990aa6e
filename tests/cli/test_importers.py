"""Every importer: a good file lands; a file with one bad row is rejected with
`file:line: field: problem`, a non-zero exit, and the database exactly as it was."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.helpers import cli_json, run_cli


@dataclass
class Case:
    kind: str
    good: Path
    bad: Path
    bad_line: int
    bad_field: str
    args: list[str] = field(default_factory=list)
    setup: list[list[str]] = field(default_factory=list)
    expect: dict[str, int] = field(default_factory=dict)


def write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding=encoding)
    return path


def movielens_100k(d: Path) -> Case:
    def folder(name: str, users: list[str], inter: list[str]) -> Path:
        f = d / name
        write(
            f / "ml-100k.item",
            "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n"
            "1\tToy Story\t1995\tAnimation Children's Comedy\n2\tHeat\t1995\tAction Crime Thriller\n",
        )
        write(
            f / "ml-100k.user",
            "user_id:token\tage:token\tgender:token\toccupation:token\tzip_code:token\n"
            + "".join(f"{u}\t30\tF\twriter\t12345\n" for u in users),
        )
        write(
            f / "ml-100k.inter",
            "user_id:token\titem_id:token\trating:float\ttimestamp:float\n" + "".join(inter),
        )
        return f

    good = folder("good", ["1", "2"], ["1\t1\t5\t881250949\n", "2\t2\t3\t881250950\n"])
    bad = folder("bad", ["3"], ["3\t1\t4\t881250951\n", "3\t2\tfive\t881250952\n"])
    return Case(
        "movielens-100k",
        good,
        bad / "ml-100k.inter",
        3,
        "rating",
        expect={"users": 2, "items": 2, "interactions": 2},
    )


def movielens_csv(d: Path) -> Case:
    def folder(name: str, ratings: str) -> Path:
        f = d / name
        write(
            f / "movies.csv",
            "movieId,title,genres,keywords\n1,Toy Story (1995),Animation|Children,toys|pixar\n"
            '6,"Heat (1995)",Action|Crime,heist\n',
        )
        write(f / "ratings.csv", "userId,movieId,rating,timestamp\n" + ratings)
        return f

    good = folder("good", "1,1,4.5,1000\n1,6,3.0,1001\n")
    bad = folder("bad", "2,1,4.0,1002\n2,6,7.5,1003\n")
    return Case(
        "movielens-csv",
        good,
        bad / "ratings.csv",
        3,
        "rating",
        expect={"users": 1, "items": 2, "interactions": 2},
    )


def items_csv(d: Path) -> Case:
    good = write(
        d / "items.csv",
        'item_id,title,year,categories,text\nb1,Dune,1965,Sci-Fi|Classic,"Desert planet, spice"\n',
    )
    bad = write(d / "bad.csv", "item_id,title,year\nb2,Emma,1815\nb3,Beloved,19x5\n")
    return Case("items-csv", good, bad, 3, "year", expect={"items": 1, "interactions": 0})


def items_jsonl(d: Path) -> Case:
    good = write(
        d / "items.jsonl",
        '{"item_id": "b1", "title": "Dune", "categories": ["Sci-Fi"], "year": 1965}\n',
    )
    bad = write(
        d / "bad.jsonl", '{"item_id": "b2", "title": "Emma"}\n\n{"item_id": "b3", "title": \n'
    )
    return Case("items-jsonl", good, bad, 3, "", expect={"items": 1})


CATALOG = "item_id,title,year\nb1,Dune,1965\nb2,Emma,1815\n"


def interactions_csv(d: Path) -> Case:
    catalog = write(d / "catalog.csv", CATALOG)
    good = write(
        d / "inter.csv",
        "user_id,item_id,rating,timestamp,text\nann,b1,5,2020-01-02,Loved the sand\n",
    )
    bad = write(d / "bad.csv", "user_id,item_id,rating\nbob,b2,4\nbob,b9,3\n")
    return Case(
        "interactions-csv",
        good,
        bad,
        3,
        "item_id",
        setup=[["items-csv", str(catalog)]],
        expect={"users": 1, "items": 2, "interactions": 1},
    )


def interactions_jsonl(d: Path) -> Case:
    catalog = write(d / "catalog.csv", CATALOG)
    good = write(
        d / "inter.jsonl",
        '{"user_id": "ann", "item_id": "b1", "rating": 4.5, "timestamp": 1577923200}\n',
    )
    bad = write(
        d / "bad.jsonl",
        '{"user_id": "bob", "item_id": "b2"}\n{"user_id": "bob", "item_id": "b1", "rating": [5]}\n',
    )
    return Case(
        "interactions-jsonl",
        good,
        bad,
        2,
        "rating",
        setup=[["items-csv", str(catalog)]],
        expect={"users": 1, "items": 2, "interactions": 1},
    )


LETTERBOXD_HEADER = "Date,Name,Year,Letterboxd URI,Rating\n"


def letterboxd(d: Path) -> Case:
    good = write(
        d / "export" / "ratings.csv",
        LETTERBOXD_HEADER + "2023-05-01,The Matrix,1999,https://boxd.it/2a1m,4.5\n",
    )
    write(
        d / "export" / "reviews.csv",
        "Date,Name,Year,Letterboxd URI,Rating,Rewatch,Review,Tags,Watched Date\n"
        "2023-05-02,The Matrix,1999,https://boxd.it/2a1m,4.5,,Bullet time!,,2023-05-01\n",
    )
    bad = write(
        d / "bad" / "ratings.csv",
        LETTERBOXD_HEADER + "2023-06-01,Heat,1995,https://boxd.it/2b0k,4\n"
        "last tuesday,Alien,1979,https://boxd.it/2b1k,5\n",
    )
    return Case(
        "letterboxd",
        good.parent,
        bad,
        3,
        "date",
        args=["--user", "me"],
        expect={"users": 1, "items": 1, "interactions": 1},
    )


GOODREADS_HEADER = (
    "Book Id,Title,Author,ISBN13,My Rating,Year Published,Original Publication Year,"
    "Date Read,Date Added,Bookshelves,Exclusive Shelf,My Review\n"
)


def goodreads(d: Path) -> Case:
    good = write(
        d / "goodreads.csv",
        GOODREADS_HEADER
        + '1,Dune,Frank Herbert,"=""9780441013593""",5,2005,1965,2021/03/04,2021/01/01,"sci-fi, classics",read,Great<br/>book\n'
        + "2,Emma,Jane Austen,,0,2003,1815,,2021/01/02,,to-read,\n",
    )
    bad = write(
        d / "bad.csv",
        GOODREADS_HEADER
        + "3,Beloved,Toni Morrison,,4,2004,1987,2022/01/01,2022/01/01,,read,\n"
        + "4,Ulysses,James Joyce,,five,1990,1922,,2022/01/02,,read,\n",
    )
    return Case(
        "goodreads",
        good,
        bad,
        3,
        "my rating",
        args=["--user", "me"],
        expect={"users": 1, "items": 2, "interactions": 1},
    )


CASES: list[Callable[[Path], Case]] = [
    movielens_100k,
    movielens_csv,
    items_csv,
    items_jsonl,
    interactions_csv,
    interactions_jsonl,
    letterboxd,
    goodreads,
]


def table_counts(home: Path) -> dict[str, int]:
    with sqlite3.connect(home / "memory.sqlite3") as conn:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        return {t: conn.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0] for t in tables}


@pytest.mark.parametrize("make", CASES, ids=lambda f: f.__name__)
def test_good_file_imports_and_bad_row_changes_nothing(
    tmp_path: Path, make: Callable[[Path], Case]
) -> None:
    case = make(tmp_path / "data")
    home = tmp_path / "home"
    for kind, path in case.setup:
        run_cli(home, "import", kind, path, "--no-embed")
    run_cli(home, "import", case.kind, str(case.good), *case.args, "--no-embed")
    before = cli_json(home, "stats")
    for key, value in case.expect.items():
        assert before[key] == value, (key, before)
    tables_before = table_counts(home)

    proc = run_cli(
        home,
        "import",
        case.kind,
        str(case.bad.parent if case.kind.startswith("movielens") else case.bad),
        *case.args,
        "--no-embed",
        check=False,
    )
    assert proc.returncode == 1, proc.stderr
    where = f"{case.bad}:{case.bad_line}:" + (f" {case.bad_field}:" if case.bad_field else "")
    assert where in proc.stderr.replace("\n", ""), proc.stderr
    assert "Traceback" not in proc.stderr
    assert cli_json(home, "stats") == before
    # Not one row of the rejected file reached any table (aliases, FTS, import log included).
    assert table_counts(home) == tables_before


def test_grouplens_original_layout_latin1(tmp_path: Path) -> None:
    d = tmp_path / "ml-100k"
    genres = ["0"] * 19
    genres[5] = "1"  # Comedy
    write(
        d / "u.item",
        "1|Misérables, Les (1995)|01-Jan-1995||http://x|" + "|".join(genres) + "\n",
        encoding="latin-1",
    )
    write(d / "u.user", "1|24|M|technician|85711\n")
    write(d / "u.data", "1\t1\t5\t874965758\n")
    home = tmp_path / "home"
    run_cli(home, "import", "movielens-100k", str(d), "--no-embed")
    assert cli_json(home, "stats")["interactions"] == 1
    hits = cli_json(home, "memory", "search", "--user", "1", "miserables", "--mode", "lexical")
    assert hits[0]["text"].startswith("Rated 5/5: Misérables, Les (1995) [Comedy]")
    # The table shows user data verbatim: "[Comedy]" is text, not terminal markup.
    table = run_cli(
        home, "memory", "search", "--user", "1", "miserables", "--mode", "lexical"
    ).stdout
    assert "[Comedy]" in table


def test_letterboxd_matches_catalog_and_keeps_reviews(tmp_path: Path) -> None:
    home = tmp_path / "home"
    case = letterboxd(tmp_path / "data")
    write(tmp_path / "catalog.csv", 'item_id,title,year,categories\nm1,"Matrix, The",1999,Sci-Fi\n')
    run_cli(home, "import", "items-csv", str(tmp_path / "catalog.csv"), "--no-embed")
    report = cli_json(home, "import", "letterboxd", str(case.good), "--user", "me", "--no-embed")
    assert (report["items_added"], report["items_matched"]) == (0, 1)
    hits = cli_json(home, "memory", "search", "--user", "me", "bullet", "--mode", "lexical")
    assert "Review: Bullet time!" in hits[0]["text"] and "[Sci-Fi]" in hits[0]["text"]
    assert json.loads(run_cli(home, "stats", "--json").stdout)["items"] == 1
