"""The analyst zone: pseudonyms, suppression, the leakage check, stable ids across runs."""

from __future__ import annotations

import json

import duckdb
from hypothesis import given, settings
from hypothesis import strategies as st
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import TEST_KEY, cli, copy_of, fast_config
from linkage.deidentify import PseudonymKey, add_pseudonyms, check_leakage, resolve_key, suppress
from linkage.errors import LeakageError, LinkageError


def test_pseudonyms_depend_on_the_key():
    a, b = PseudonymKey(b"k" * 32, "a"), PseudonymKey(b"j" * 32, "b")
    assert a.pseudonym("K1") == a.pseudonym("K1")
    assert a.pseudonym("K1") != b.pseudonym("K1")
    assert a.pseudonym("K1") != a.pseudonym("K2")
    assert a.fingerprint != b.fingerprint and "k" * 16 not in a.fingerprint


@pytest.mark.parametrize("secret", [b"k" * 16, b"k" * 64, b"k" * 65, "kéy-".encode() * 40])
def test_pseudonyms_in_sql_equal_the_python_hmac(secret):
    key = PseudonymKey(secret, "test")
    con = duckdb.connect()
    con.execute("CREATE TABLE person_keys AS SELECT * FROM (VALUES ('K1'), ('Kä'), ('K' || repeat('x', 100))) t(person_key)")
    add_pseudonyms(con, "person_keys", key, out="person_ids")
    rows = con.execute("SELECT person_key, person_id FROM person_ids").fetchall()
    assert len(rows) == 3 and all(pid == key.pseudonym(k) for k, pid in rows)


def pid(i: int) -> str:
    """A person id of the pseudonyms' shape (the leakage check refuses any other)."""
    return "P" + f"{i:032x}"


STRONG_KEY = "5ba0218ced84e77603da23d6686046450770d007e69cfadb1ac0421ecdeb9120"


def test_short_or_missing_keys_are_refused(monkeypatch, tmp_path):
    monkeypatch.setenv("LINKAGE_PSEUDONYM_KEY", "short")
    with pytest.raises(LinkageError, match="shorter than 16 characters"):
        resolve_key(None, tmp_path)
    monkeypatch.delenv("LINKAGE_PSEUDONYM_KEY")
    with pytest.raises(LinkageError, match="no pseudonymisation key"):
        resolve_key(None, tmp_path)
    with pytest.raises(LinkageError, match="outputs.key_file: .* does not exist"):
        resolve_key("missing.key", tmp_path)
    (tmp_path / "job.key").write_text(STRONG_KEY + "\n")
    assert resolve_key("job.key", tmp_path).origin.startswith("key file")
    (tmp_path / "bad.key").write_bytes(b"\xff\xfe" * 40)
    with pytest.raises(LinkageError, match="not UTF-8 text"):
        resolve_key("bad.key", tmp_path)


@pytest.mark.parametrize(
    "weak",
    [
        "\U0001f511" * 4,  # 16 bytes but 4 characters
        "\U0001f511" * 40,  # 40 characters, one repeated
        "test-key-0123456789abcdef",  # words and runs
        "a" * 64,
        "0f" * 32,  # a repeated stretch
        "abcdefghijklmnopqrstuvwxyz0123456789",
        "passwordpassword12345678",
        "correct horse battery staple",  # a passphrase of four words
        "a-completely-different-key-42",
        "0123456789abcdef0123456789abcdef",
    ],
)
def test_low_entropy_keys_are_refused_with_what_is_needed(monkeypatch, tmp_path, weak):
    monkeypatch.setenv("LINKAGE_PSEUDONYM_KEY", weak)
    with pytest.raises(LinkageError, match="at least 128 bits of randomness: 32 or more random hex") as err:
        resolve_key(None, tmp_path)
    assert weak not in str(err.value)


def test_random_keys_are_accepted(monkeypatch, tmp_path):
    """Keys from the advised command always pass; 32 hex or 22 base64 characters almost always."""
    import secrets

    from linkage.deidentify import key_entropy_bits

    for _ in range(200):
        monkeypatch.setenv("LINKAGE_PSEUDONYM_KEY", secrets.token_hex(32))
        resolve_key(None, tmp_path)
    assert sum(key_entropy_bits(secrets.token_hex(16)) >= 128 for _ in range(500)) >= 450
    assert sum(key_entropy_bits(secrets.token_urlsafe(16)) >= 128 for _ in range(500)) >= 450
    assert key_entropy_bits(STRONG_KEY[:31]) < 128 <= key_entropy_bits(STRONG_KEY[:32])


def test_key_fingerprint_is_slow_to_test_guesses_against_and_stable():
    """PBKDF2-HMAC-SHA256 with the documented salt and iterations; runs before it still match."""
    import hashlib
    import hmac

    from linkage.deidentify import FINGERPRINT_ITERATIONS, FINGERPRINT_SALT

    key = PseudonymKey(STRONG_KEY.encode(), "test")
    assert FINGERPRINT_ITERATIONS >= 600_000 and FINGERPRINT_SALT == b"linkage pseudonym key fingerprint v2"
    expected = hashlib.pbkdf2_hmac("sha256", STRONG_KEY.encode(), FINGERPRINT_SALT, FINGERPRINT_ITERATIONS).hex()[:16]
    assert key.fingerprint == expected
    assert key.fingerprint != hmac.new(STRONG_KEY.encode(), b"linkage key fingerprint v1", hashlib.sha256).hexdigest()[:16]
    legacy = hmac.new(STRONG_KEY.encode(), b"linkage key fingerprint v1", hashlib.sha256).hexdigest()[:16]
    assert key.matches_fingerprint(expected) and key.matches_fingerprint(legacy)
    assert not key.matches_fingerprint(PseudonymKey(b"another" + STRONG_KEY.encode(), "").fingerprint)
    assert not key.matches_fingerprint(None)


@pytest.mark.parametrize(
    "counts, hidden",
    [
        ([100, 200, 300], [False, False, False]),  # nothing small
        ([5, 200, 300, 400], [True, True, True, False]),  # one small: two more hidden
        ([5, 7, 300, 400], [True, True, True, False]),  # two small: one more hidden
        ([5, 7, 3, 400], [True, True, True, False]),  # three small: enough
        ([0, 200, 300], [False, False, False]),  # zero is not disclosive
    ],
)
def test_suppression_hides_small_cells_and_enough_others(counts, hidden):
    assert suppress(counts, 10) == hidden


@pytest.fixture(scope="module")
def published(justice_run, tmp_path_factory):
    return copy_of(justice_run[0], tmp_path_factory.mktemp("deid") / "run")


def test_analyst_tables_hold_no_identifiers(published, synth_dir):
    con = duckdb.connect()
    analyst = sorted((published / "analyst").glob("*.parquet"))
    assert {p.stem for p in analyst} >= {"pnc", "prison", "probation", "libra", "crest", "persons", "linkage_summary"}
    forbidden = {"record_id", "first_name", "surname", "date_of_birth", "pnc_id", "cro_number", "postcode",
                 "defendant_name", "prison_number", "crn", "booking_id", "libra_case_id", "offender_id"}
    for path in analyst:
        cols = {r[0] for r in con.execute(f"DESCRIBE SELECT * FROM '{path}'").fetchall()}
        assert not cols & forbidden, (path.name, cols & forbidden)
    # No value of any identifying input column appears in any analyst table.
    ids = con.execute(
        f"""SELECT DISTINCT upper(trim(v)) FROM (
            SELECT unnest([surname, forenames, date_of_birth, pnc_id, cro_number, pnc_record_id]) AS v FROM read_csv('{synth_dir}/pnc.csv', all_varchar=true)
            UNION ALL SELECT unnest([defendant_name, defendant_dob, postcode, libra_case_id]) FROM read_csv('{synth_dir}/libra.csv', all_varchar=true))
        WHERE length(v) >= 4"""
    ).fetchall()
    con.execute("CREATE TABLE ids AS SELECT * FROM (VALUES ('x')) t(v)")
    con.executemany("INSERT INTO ids VALUES (?)", ids)
    for path in analyst:
        for col, typ in con.execute(f"SELECT column_name, column_type FROM (DESCRIBE SELECT * FROM '{path}')").fetchall():
            # A month is typed as its first day: read it as the month it stands for.
            text = f'strftime(t."{col}", \'%Y-%m\')' if typ == "DATE" and col.endswith("_month") else f'CAST(t."{col}" AS VARCHAR)'
            hits = con.execute(f"SELECT count(*) FROM '{path}' t JOIN ids ON ids.v = upper(trim({text}))").fetchall()[0][0]
            assert hits == 0, (path.name, col)


def test_person_id_on_every_record_and_key_written_nowhere(published):
    con = duckdb.connect()
    for source in ("pnc", "prison", "probation", "libra", "crest"):
        nulls = con.execute(f"SELECT count(*) FILTER (WHERE person_id IS NULL) FROM '{published}/analyst/{source}.parquet'").fetchall()[0][0]
        assert nulls == 0
    manifest = json.loads((published / "manifest.json").read_text())
    assert manifest["pseudonym_key_fingerprint"] == PseudonymKey(TEST_KEY.encode(), "").fingerprint
    for path in published.rglob("*"):
        if path.is_file():
            assert TEST_KEY.encode() not in path.read_bytes(), path


def test_carried_columns_keep_their_types(published):
    """Counts are numbers, coarsened years integers, months dates; codes with leading zeros stay text."""
    analyst = published / "analyst"
    pnc = pq.read_schema(analyst / "pnc.parquet")
    assert pa.types.is_integer(pnc.field("arrest_count").type)
    assert pa.types.is_integer(pnc.field("first_arrest_date_year").type)
    assert pa.types.is_string(pnc.field("force_code").type) or pa.types.is_large_string(pnc.field("force_code").type)
    prison = pq.read_schema(analyst / "prison.parquet")
    assert pa.types.is_integer(prison.field("sentence_days").type)
    assert pa.types.is_date32(prison.field("reception_date_month").type)
    months = pq.read_table(analyst / "prison.parquet", columns=["reception_date_month"]).column(0).to_pylist()
    assert {m.day for m in months if m is not None} == {1}
    for table in ("pnc", "prison", "probation", "libra", "crest"):
        ages = [f for f in pq.read_schema(analyst / f"{table}.parquet") if f.name.startswith("age_at_")]
        assert ages and all(pa.types.is_integer(f.type) for f in ages)


def test_impossible_values_are_nulled_and_counted(published, synth_dir):
    """A date of birth after the event leaves the age null, counted by reason in the
    dictionary; no age is negative; no year of birth falls after the person's first event."""
    con = duckdb.connect()
    package = json.loads((published / "analyst" / "datapackage.json").read_text())
    fields = {(r["name"], f["name"]): f for r in package["resources"] for f in r["schema"]["fields"]}
    # Expected from the restricted side: libra records whose date of birth is after the hearing.
    expected = con.execute(
        f"""SELECT count(*) FROM read_csv('{synth_dir}/libra.csv', all_varchar=true) l
        JOIN '{published}/restricted/standardised.parquet' s
          ON s.source_dataset = 'libra' AND s.record_id = trim(l.libra_case_id)
        WHERE datediff('month', s.date_of_birth, CAST(l.hearing_date AS DATE)) < 0"""
    ).fetchall()[0][0]
    assert expected > 0  # the synthetic data has such records: the test can fail
    assert fields[("libra", "age_at_hearing_date")]["nulled_impossible"]["date of birth after the event"] == expected
    for table in ("pnc", "prison", "probation", "libra", "crest"):
        path = published / "analyst" / f"{table}.parquet"
        for (col,) in con.execute(f"SELECT column_name FROM (DESCRIBE SELECT * FROM '{path}') WHERE column_name LIKE 'age_at_%'").fetchall():
            low, high = con.execute(f'SELECT min("{col}"), max("{col}") FROM \'{path}\'').fetchall()[0]
            assert low >= 0 and high <= 120, (table, col)
    events = " UNION ALL ".join(
        f"SELECT person_id, year({col}) AS y FROM '{published}/analyst/{t}.parquet'"
        for t, col in [("pnc", "make_date(first_arrest_date_year, 1, 1)"), ("prison", "reception_date_month"),
                       ("probation", "order_start_date_month"), ("libra", "hearing_date_month"),
                       ("crest", "committal_date_month")])
    after = con.execute(
        f"SELECT count(*) FROM '{published}/analyst/persons.parquet' p JOIN (SELECT person_id, min(y) AS first "
        f"FROM ({events}) GROUP BY ALL) e USING (person_id) WHERE p.year_of_birth > e.first").fetchall()[0][0]
    assert after == 0


def test_persons_carry_banded_link_confidence(published):
    """Per person: weakest link band, any deterministic link, cluster size band, agreeing with the crosswalk."""
    con = duckdb.connect()
    wrong = con.execute(
        f"""WITH truth AS (SELECT person_id, any_value(cluster_size) AS size, min(cluster_min_match_weight) AS w,
                                  bool_or(deterministic_links > 0) AS det
                           FROM '{published}/restricted/crosswalk.parquet' GROUP BY ALL)
        SELECT count(*) FILTER (WHERE p.link_any_deterministic <> t.det),
               count(*) FILTER (WHERE t.size > 1 AND t.w IS NOT NULL
                                AND NOT (t.w >= p.link_weakest_weight_band AND (t.w < p.link_weakest_weight_band + 5
                                         OR p.link_weakest_weight_band = 20) OR (p.link_weakest_weight_band = -5 AND t.w < 0))),
               count(*) FILTER (WHERE t.size = 1 AND p.link_weakest_weight_band IS NOT NULL),
               count(*) FILTER (WHERE NOT (p.cluster_size_band <= t.size AND (t.size < 3 AND p.cluster_size_band = t.size
                                OR t.size BETWEEN 3 AND 5 AND p.cluster_size_band = 3 OR t.size BETWEEN 6 AND 10 AND
                                p.cluster_size_band = 6 OR t.size BETWEEN 11 AND 20 AND p.cluster_size_band = 11
                                OR t.size > 20 AND p.cluster_size_band = 21))),
               count(*), count(*) FILTER (WHERE p.link_weakest_weight_band IS NOT NULL)
        FROM '{published}/analyst/persons.parquet' p JOIN truth t USING (person_id)"""
    ).fetchall()[0]
    assert wrong[:4] == (0, 0, 0, 0) and wrong[4] > 1000 and wrong[5] > 100


def test_every_analyst_column_is_documented(published):
    """datapackage.json and README.md describe every table and column in analyst/, with its type."""
    analyst = published / "analyst"
    package = json.loads((analyst / "datapackage.json").read_text())
    readme = (analyst / "README.md").read_text()
    resources = {r["name"]: r for r in package["resources"]}
    assert package["profile"] == "tabular-data-package" and package["linkage"]["suppression_threshold"] == 10
    tables = sorted(p.stem for p in analyst.glob("*.parquet"))
    assert sorted(resources) == tables
    frictionless = {"int": "integer", "dou": "number", "str": "string", "lar": "string", "dat": "date", "boo": "boolean"}
    for table in tables:
        resource = resources[table]
        assert resource["description"], table
        assert resource["rows"] == pq.read_metadata(analyst / f"{table}.parquet").num_rows
        assert f"## {table} ({table}.parquet, {resource['rows']} rows)" in readme
        fields = {f["name"]: f for f in resource["schema"]["fields"]}
        schema = pq.read_schema(analyst / f"{table}.parquet")
        assert sorted(fields) == sorted(schema.names), table
        for column in schema:
            field = fields[column.name]
            assert field["description"], f"{table}.{column.name} is undocumented"
            assert field["coarsening"], f"{table}.{column.name}"
            kind = frictionless[str(column.type)[:3]]
            assert field["type"] == kind or (field["type"] == "year" and kind == "integer"), (table, column.name)
            assert f"| {column.name} | " in readme
    summary = {f["name"]: f for f in resources["linkage_summary"]["schema"]["fields"]}
    assert "suppressed" in summary["people"]["suppression"]


# Identifier values planted into analyst-bound columns of libra.csv, one row each: a value
# read from each kind of identifying field of some source (SQL over the synthetic extracts).
PLANTED = {
    "notes_name": "SELECT defendant_name FROM libra WHERE length(defendant_name) > 8",
    "notes_alias": "SELECT split_part(alias_names, ';', 1) FROM pnc WHERE length(split_part(alias_names, ';', 1)) > 8",
    "notes_alias_dob": "SELECT split_part(alias_dates_of_birth, ';', 1) FROM prison "
                       "WHERE length(split_part(alias_dates_of_birth, ';', 1)) > 8",
    "notes_dob": "SELECT defendant_dob FROM libra WHERE length(defendant_dob) > 8",
    "notes_cro": "SELECT cro FROM probation WHERE length(cro) > 6",
    "notes_crn": "SELECT crn FROM probation WHERE length(crn) > 5",
    "notes_postcode": "SELECT postcode FROM probation WHERE postcode LIKE '% %'",
    "notes_record_id": "SELECT booking_id FROM prison",
}


def test_planted_identifiers_fail_the_run_and_publish_nothing(synth_dir, justice_run, tmp_path):
    """Names, aliases, dates, reference numbers, postcodes and record ids pasted into
    analyst-bound columns are each caught, by table and column, and nothing is published."""
    data = tmp_path / "data"
    con = _copy_extracts(synth_dir, data)
    planted = {column: con.execute(f"{sql} ORDER BY 1 LIMIT 1").fetchall()[0][0] for column, sql in PLANTED.items()}
    for column, value in planted.items():
        assert value, column
    res, out = _run_carrying(con, data, tmp_path, planted, justice_run)
    assert res.returncode == 1, res.stderr
    message = " ".join(res.stderr.split())
    assert "leakage check failed" in message
    for column in PLANTED:
        assert f"libra.{column} (1 rows)" in message, column
    assert "Nothing was published" in message
    assert not out.exists()


def _copy_extracts(synth_dir, data):
    data.mkdir()
    for f in synth_dir.iterdir():
        (data / f.name).write_bytes(f.read_bytes())
    con = duckdb.connect()
    for source in ("pnc", "prison", "probation", "libra", "crest"):
        con.execute(f"CREATE TABLE {source} AS SELECT * FROM read_csv('{data}/{source}.csv', header=true, all_varchar=true)")
    return con


def _run_carrying(con, data, tmp_path, planted: dict[str, str], justice_run):
    """Run the job on ``data`` with each planted value in a new carried column of libra.csv
    (rows 1, 11, 21...), with the session justice run's model (carried columns are not in
    the model: training is not what is tested); returns the finished process and the --out folder."""
    con.execute("CREATE TABLE t AS SELECT *, row_number() OVER () AS _n FROM libra")
    for i, (column, value) in enumerate(planted.items()):
        con.execute(f"ALTER TABLE t ADD COLUMN {column} VARCHAR DEFAULT ''")
        con.execute(f"UPDATE t SET {column} = ? WHERE _n = ?", [value, 10 * i + 1])
    con.execute(f"COPY (SELECT * EXCLUDE (_n) FROM t) TO '{data}/libra.csv' (HEADER)")
    out = tmp_path / "run"
    config = fast_config(tmp_path, carry={"libra": {column: "keep" for column in planted}})
    model = justice_run[0] / "restricted" / "model.json"
    return cli("run", str(config), "--data", str(data), "--out", str(out), "--model", str(model)), out


def _disguises(con) -> dict[str, str]:
    """Identifier values of the inputs, disguised as an analyst-bound column could hold them."""
    import datetime as dt

    dob = dt.date.fromisoformat(con.execute(
        "SELECT date_of_birth FROM pnc WHERE date_of_birth LIKE '19__-__-__' ORDER BY pnc_record_id LIMIT 1").fetchall()[0][0])
    pnc = con.execute("SELECT pnc_id FROM pnc WHERE pnc_id LIKE '20__/_______%' ORDER BY pnc_record_id LIMIT 1").fetchall()[0][0]
    year, rest = pnc.split("/")
    cro = con.execute("SELECT cro_number FROM pnc WHERE cro_number LIKE '0%/%' ORDER BY 1 LIMIT 1").fetchall()
    cro = cro[0][0] if cro else con.execute("SELECT cro_number FROM pnc WHERE cro_number LIKE '%/%' ORDER BY 1 LIMIT 1").fetchall()[0][0]
    surname, forename = con.execute(
        "SELECT surname, split_part(forenames, ' ', 1) FROM pnc WHERE length(surname) > 4 AND length(forenames) > 3 "
        "ORDER BY pnc_record_id LIMIT 1").fetchall()[0]
    postcode = con.execute("SELECT postcode FROM probation WHERE postcode LIKE '% %' ORDER BY 1 LIMIT 1").fetchall()[0][0]
    return {
        "dob_words": dob.strftime("%d %b %Y"),  # 21 Oct 1998
        "dob_dashes": dob.strftime("%d-%m-%Y"),
        "dob_compact": dob.strftime("%Y%m%d"),
        "dob_short_year": dob.strftime("%d/%m/%y"),
        "dob_dots": dob.strftime("%d.%m.%Y"),
        "pnc_short": f"{year[2:]}/{rest.lstrip('0')}",  # 15/9663713N
        "pnc_spaced": f"{year} / {rest}",
        "cro_unpadded": cro.lstrip("0"),
        "name_comma": f"{surname.upper()}, {forename.title()}",  # OLAWALE, Femi
        "name_plain": f"{surname.title()} {forename.title()}",
        "name_sentence": f"Seen at court with {forename.title()} {surname.title()} on Monday",
        "email": f"{forename.lower()}.{surname.lower()}@example.org",
        "postcode_no_space": postcode.replace(" ", ""),
        "postcode_sentence": f"moved to {postcode.lower()} last year",
        "short_obi": "OBI",
        "short_ho": "Ho",
        "short_lee": "LEE",
        "short_pair": "LEE, Femi",
    }


def test_disguised_identifiers_fail_the_run(synth_dir, justice_run, tmp_path):
    """Dates of birth in five layouts, PNCs and CROs respelt, names reordered or in a sentence,
    an e-mail address, postcodes without their space, and short surnames (OBI, HO, LEE: made
    input values here) are each caught in their column, and nothing is published."""
    data = tmp_path / "data"
    con = _copy_extracts(synth_dir, data)
    # Short names as the inputs hold them: three PNC records renamed.
    con.execute("UPDATE pnc SET surname = 'OBI' WHERE pnc_record_id = (SELECT min(pnc_record_id) FROM pnc)")
    con.execute("UPDATE pnc SET surname = 'HO' WHERE pnc_record_id = (SELECT max(pnc_record_id) FROM pnc)")
    con.execute("UPDATE pnc SET forenames = 'LEE' WHERE pnc_record_id = (SELECT min(pnc_record_id) FROM pnc WHERE surname <> 'OBI')")
    con.execute("UPDATE pnc SET forenames = 'FEMI' WHERE pnc_record_id = (SELECT max(pnc_record_id) FROM pnc WHERE surname <> 'HO')")
    con.execute(f"COPY pnc TO '{data}/pnc.csv' (HEADER)")
    planted = _disguises(con)
    assert len(planted) == 18
    res, out = _run_carrying(con, data, tmp_path, planted, justice_run)
    assert res.returncode == 1, res.stderr
    message = " ".join(res.stderr.split())
    assert "leakage check failed" in message and "Nothing was published" in message
    missed = [column for column in planted if f"libra.{column} (1 rows)" not in message]
    assert not missed, missed
    for value in planted.values():
        assert value not in message
    assert not out.exists()


def test_legitimate_carried_columns_pass_the_check(synth_dir, justice_run, tmp_path):
    """Court, offence and outcome codes, regions, sentence types and whole event dates (which
    can fall on someone's birthday) are published: the check does not mistake them."""
    out = tmp_path / "run"
    dates = {"pnc": {"first_arrest_date": "keep", "force_code": "keep"},
             "prison": {"reception_date": "keep", "release_date": "keep", "establishment_code": "keep"},
             "probation": {"order_start_date": "keep", "probation_region": "keep", "order_type": "keep"},
             "libra": {"hearing_date": "keep", "court_code": "keep", "offence_code": "keep", "outcome_code": "keep"},
             "crest": {"committal_date": "keep", "crown_court_code": "keep", "sentence_type": "keep", "case_number": "keep"}}
    model = justice_run[0] / "restricted" / "model.json"  # carried columns are not in the model
    res = cli("run", str(fast_config(tmp_path, carry=dates)), "--data", str(synth_dir), "--out", str(out),
              "--model", str(model))
    assert res.returncode == 0, res.stderr
    con = duckdb.connect()
    hearing = con.execute(f"SELECT count(DISTINCT hearing_date) FROM '{out}/analyst/libra.parquet'").fetchall()[0][0]
    assert hearing > 100  # whole dates were published, and checked
    codes = con.execute(f"SELECT count(DISTINCT court_code) FROM '{out}/analyst/libra.parquet'").fetchall()[0][0]
    assert codes > 20


def _check_inputs(tmp_path, raw_values: list[tuple[str, str]],
                  record_ids=lambda i, name: f"SELECT 'R-{name}-' || i AS record_id FROM range(100) t(i)"):
    """What the leakage check reads besides the analyst tables, for the justice config: each
    source's record ids (``all_<source>``, from ``record_ids(index, source)``) and the input
    values (``raw_values(field, v)``); and an empty analyst folder."""
    from linkage.config import parse_config

    from conftest import JUSTICE

    cfg = parse_config(JUSTICE.read_text(), JUSTICE)
    con = duckdb.connect()
    for i, name in enumerate(cfg.sources):
        con.execute(f"CREATE TABLE all_{name} AS {record_ids(i, name)}")
    con.execute("CREATE TABLE raw_values (field VARCHAR, v VARCHAR)")
    con.executemany("INSERT INTO raw_values VALUES (?, ?)", raw_values)
    analyst = tmp_path / "analyst"
    analyst.mkdir()
    return cfg, con, analyst


def test_the_check_reads_every_analyst_table_found(tmp_path):
    """A table added to analyst/ later is checked without being listed anywhere."""
    cfg, con, analyst = _check_inputs(tmp_path, [("surname", "OLAWALE"), ("first", "Femi"), ("dob", "1998-10-21"),
                                                 ("pnc", "2015/9663713N"), ("postcode", "SW1A 1AA")])
    pq.write_table(pa.table({"person_id": [pid(1), pid(2)], "court_code": ["B10JQ", "C01AB"]}), analyst / "libra.parquet")
    assert check_leakage(con, cfg, analyst).hits == {}
    pq.write_table(pa.table({"person_id": [pid(1)], "note": ["born 21.10.1998, pnc 15/9663713N"]}), analyst / "later_table.parquet")
    with pytest.raises(LeakageError, match=r"later_table.note \(1 rows\)"):
        check_leakage(con, cfg, analyst)


def test_a_person_id_column_holding_anything_but_a_pseudonym_fails_the_leakage_check(tmp_path):
    cfg, con, analyst = _check_inputs(tmp_path, [("surname", "OLAWALE")],
                                      lambda i, name: "SELECT 'R' || i AS record_id FROM range(10) t(i)")
    good = "P" + "0123456789abcdef" * 2
    pq.write_table(pa.table({"person_id": [good, good], "person_id_0_99": [good, "K1234abcd"]}), analyst / "t.parquet")
    with pytest.raises(LeakageError, match=r"t.person_id_0_99 \(1 rows\)"):
        check_leakage(con, cfg, analyst)


@pytest.mark.parametrize(
    "column, fails",
    [
        ([str(1000 + 7 * i) for i in range(300)], False),  # counts: they meet record ids 1..5000 by chance
        ([str(10_000_001 + 7 * 4321), None, None], True),  # one record id alone in a column
        (["4321", None, None], False),  # a number of five digits or fewer singles out nobody
        ([str(10_000_001 + 7 * i) for i in range(300)], True),  # a column of the sparse ids: beyond chance
    ],
)
def test_whole_numbers_are_judged_against_chance(tmp_path, column, fails):
    """Record ids that count 1, 2, 3... do not fail every count column; a record id column does."""
    def ids(i: int, name: str) -> str:  # the first source counts 1, 2, 3...; the others are sparse
        value = "CAST(i AS VARCHAR)" if i == 0 else "CAST(10000001 + 7 * i AS VARCHAR)"
        return f"SELECT {value} AS record_id FROM range(1, 5001) t(i)"

    cfg, con, analyst = _check_inputs(tmp_path, [("surname", "OLAWALE")], ids)
    pq.write_table(pa.table({"person_id": [pid(i) for i in range(len(column))], "x": column}), analyst / "t.parquet")
    if fails:
        with pytest.raises(LeakageError, match=r"t.x \("):
            check_leakage(con, cfg, analyst)
    else:
        assert check_leakage(con, cfg, analyst).hits == {}


@pytest.mark.parametrize("records, fails", [(5000, False), (2, True)])
def test_a_table_of_counts_weighs_each_row_by_its_records(tmp_path, records, fails):
    """A group label (an ethnicity code that hard data also puts in a name field) on one row
    of 5,000 records is a category; on a row of two records it counts as rare."""
    cfg, con, analyst = _check_inputs(tmp_path, [("surname", "ICQ1"), ("first", "Femi")])
    groups = [f"ICQ{i}" for i in range(1, 10)]
    pq.write_table(pa.table({"group": groups, "records": pa.array([records] + [5000] * 8, pa.int64())}),
                   analyst / "counts.parquet")
    if fails:
        with pytest.raises(LeakageError, match=r"counts.group \("):
            check_leakage(con, cfg, analyst)
    else:
        assert check_leakage(con, cfg, analyst).hits == {}


def test_rerun_with_5_percent_new_records_keeps_ids(synth_dir, justice_run, tmp_path):
    """People none of whose records changed keep their person id when 5% new records arrive."""
    con = duckdb.connect()
    old, new = tmp_path / "old", tmp_path / "new"
    old.mkdir()
    new.mkdir()
    truth = f"read_csv('{synth_dir}/truth.csv', all_varchar=true)"
    ids = {"pnc": "pnc_record_id", "prison": "booking_id", "probation": "offender_id", "libra": "libra_case_id", "crest": "crest_defendant_id"}
    # The 'new' records: a seeded 5% of all records; the first run lacks them.
    con.execute(f"CREATE TABLE held_back AS SELECT source_dataset, record_id FROM {truth} WHERE hash(record_id || 'seed5') % 100 < 5")
    for source, rid in ids.items():
        src = f"read_csv('{synth_dir}/{source}.csv', header=true, all_varchar=true)"
        con.execute(f"COPY (SELECT * FROM {src} WHERE {rid} NOT IN (SELECT record_id FROM held_back WHERE source_dataset = '{source}')) TO '{old}/{source}.csv' (HEADER)")
        (new / f"{source}.csv").write_bytes((synth_dir / f"{source}.csv").read_bytes())
    config = fast_config(tmp_path)
    model = justice_run[0] / "restricted" / "model.json"  # ids are what is tested, not training
    assert cli("run", str(config), "--data", str(old), "--out", str(tmp_path / "r1"), "--model", str(model)).returncode == 0
    res = cli("run", str(config), "--data", str(new), "--out", str(tmp_path / "r2"), "--previous", str(tmp_path / "r1"),
              "--model", str(tmp_path / "r1" / "restricted" / "model.json"))
    assert res.returncode == 0, res.stderr
    kept, people = con.execute(
        f"""WITH unchanged AS (SELECT person_id FROM {truth} GROUP BY ALL
                HAVING count(*) FILTER (WHERE (source_dataset, record_id) IN (SELECT (source_dataset, record_id) FROM held_back)) = 0),
        per_person AS (
            SELECT t.person_id, bool_and(a.person_id = b.person_id) AS same
            FROM {truth} t JOIN '{tmp_path}/r1/restricted/crosswalk.parquet' a USING (source_dataset, record_id)
            JOIN '{tmp_path}/r2/restricted/crosswalk.parquet' b USING (source_dataset, record_id)
            WHERE t.person_id IN (SELECT person_id FROM unchanged) GROUP BY ALL)
        SELECT count(*) FILTER (WHERE same), count(*) FROM per_person"""
    ).fetchall()[0]
    share = kept / people
    print(f"\nids kept for {kept} of {people} unchanged people: {share:.4f}")
    assert share >= 0.99
    manifest = json.loads((tmp_path / "r2" / "manifest.json").read_text())
    assert manifest["ids"]["kept"] > 0 and manifest["id_generation"] == 2


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=" \t\n\r\f\x0b\xa0aB1,-", max_size=12))
def test_value_normalisation_matches_the_regex_everywhere(text):
    """The leakage check's fast normalisation equals upper(trim(collapse \\s+)) on any text."""
    from linkage.deidentify import _NORM

    con = duckdb.connect()
    fast, reference = con.execute(
        f"SELECT {_NORM.format('v')}, upper(trim(regexp_replace(v, '\\s+', ' ', 'g'))) FROM (SELECT ?::VARCHAR AS v)",
        [text],
    ).fetchall()[0]
    assert fast == reference


@pytest.mark.parametrize("reverse", [False, True])
def test_persons_break_ties_the_same_way_whatever_the_row_order(reverse):
    """A person with one F and one M record (and two birth years) is F, the earlier year."""
    from linkage.deidentify import persons_query

    nodes = [(1, "M", 1990), (2, "F", 1989), (3, "M", 1970), (4, "M", 1971), (5, "M", 1971)]
    crosswalk = [("p1", "pnc", 1), ("p1", "libra", 2), ("p2", "pnc", 3), ("p2", "crest", 4), ("p2", "libra", 5)]
    if reverse:
        nodes, crosswalk = nodes[::-1], crosswalk[::-1]
    con = duckdb.connect()
    con.execute("CREATE TABLE nodes (node_id BIGINT, sex VARCHAR, year_of_birth INTEGER)")
    con.executemany("INSERT INTO nodes VALUES (?, ?, ?)", nodes)
    con.execute("CREATE TABLE crosswalk (person_id VARCHAR, source_dataset VARCHAR, node_id BIGINT)")
    con.executemany("INSERT INTO crosswalk VALUES (?, ?, ?)", crosswalk)
    rows = con.execute(persons_query(["pnc", "libra", "crest"])).fetchall()
    assert rows == [("p1", "F", 1989, "libra,pnc", 2, 1, 1, 0), ("p2", "M", 1971, "crest,libra,pnc", 3, 1, 1, 1)]


def test_linkage_summary_counts_people_per_pair_and_per_number_of_sources(tmp_path):
    """The summary's counts equal a count over the people's own sources (no suppression)."""
    import random

    from linkage.deidentify import persons_query, write_linkage_summary

    names = ["pnc", "prison", "probation", "libra", "crest"]
    rng = random.Random(7)
    crosswalk, nodes, people = [], [], {}
    for p in range(400):
        chosen = rng.sample(names, rng.randint(1, 5))
        people[f"P{p:04d}"] = set(chosen)
        for source in chosen + rng.sample(chosen, 1):  # one source twice: records, not people
            nodes.append((len(nodes), "M", 1980))
            crosswalk.append((f"P{p:04d}", source, len(nodes) - 1))
    con = duckdb.connect()
    con.execute("CREATE TABLE nodes (node_id BIGINT, sex VARCHAR, year_of_birth INTEGER)")
    con.executemany("INSERT INTO nodes VALUES (?, ?, ?)", nodes)
    con.execute("CREATE TABLE crosswalk (person_id VARCHAR, source_dataset VARCHAR, node_id BIGINT)")
    con.executemany("INSERT INTO crosswalk VALUES (?, ?, ?)", crosswalk)
    con.execute(f"CREATE TABLE persons AS {persons_query(names)}")
    out = tmp_path / "summary.parquet"
    write_linkage_summary(con, "persons", names, 1, out)
    got = pq.read_table(out).to_pylist()
    pairs = {(r["source_a"], r["source_b"]): r for r in got if r["table"] == "pair"}
    assert len(pairs) == 10
    for (a, b), r in pairs.items():
        assert r["people_in_a"] == sum(a in s for s in people.values())
        assert r["people_in_b"] == sum(b in s for s in people.values())
        assert r["people"] == sum(a in s and b in s for s in people.values())
        assert not r["suppressed"]
    by_k = {r["table"]: r["people"] for r in got if r["table"] != "pair"}
    for k in range(1, 6):
        label = f"people in {k} source{'s' if k > 1 else ''}"
        assert by_k[label] == sum(len(s) == k for s in people.values())


@pytest.mark.parametrize("as_month, fails", [(True, False), (False, True)])
def test_a_month_is_not_mistaken_for_a_fragment_of_an_identifier(tmp_path, as_month, fails):
    """Event dates coarsened to the month are read as YYYY-MM; spelt compact (201905) a month
    meets six-digit fragments of mistyped identifiers, common at ten million records. A month
    singles out nobody and passes; the same six digits as a value of their own still fail."""
    import datetime as dt

    months = [dt.date(2005 + m // 12, m % 12 + 1, 1) for m in range(240)]
    fragments = [("pnc", d.strftime("%Y/%m")) for d in months[::10]]  # a PNC ID cut short
    cfg, con, analyst = _check_inputs(tmp_path, [("surname", "OLAWALE"), *fragments])
    column = months if as_month else [d.strftime("%Y%m") for d in months[::10]]
    pq.write_table(pa.table({"person_id": [pid(i) for i in range(len(column))], "hearing_month": column}),
                   analyst / "libra.parquet")
    if fails:
        with pytest.raises(LeakageError, match=r"libra.hearing_month \("):
            check_leakage(con, cfg, analyst)
    else:
        assert check_leakage(con, cfg, analyst).hits == {}
