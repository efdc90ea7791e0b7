"""Keeping the message catalogues: `python -m bertd.i18n.catalogues update` extracts every message
(pybabel extract, mapped by babel.cfg and babel-dashboard.cfg) into bertd/locale/*.pot, merges it
into the Chinese catalogues (pybabel update; new entries come with an empty msgstr to translate),
and `compile` writes what the server reads (bertd.mo, pybabel compile) and the dashboard's
catalogue (bertd/static/i18n/zh-CN.json, from dashboard.po). `check` lists what is missing or stale;
tests/test_i18n_catalogues.py fails on any of it. Needs Babel (the test extra), the server does not.

Two domains: "bertd" (the server's errors, task errors, the OpenAPI document, the CLI) and
"dashboard" (the web page)."""

from __future__ import annotations

import json
import string
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LOCALE_DIR = ROOT / "bertd" / "locale"
DASHBOARD_JSON = ROOT / "bertd" / "static" / "i18n" / "zh-CN.json"
LOCALE = "zh_CN"


@dataclass(frozen=True)
class Domain:
    name: str
    mapping: str
    keywords: tuple[str, ...]

    @property
    def pot(self) -> Path:
        return LOCALE_DIR / f"{self.name}.pot"

    @property
    def po(self) -> Path:
        return LOCALE_DIR / LOCALE / "LC_MESSAGES" / f"{self.name}.po"


# Text("...") and N_("...") are the server's lazy messages, translate("...") a direct look-up,
# tr("...") the CLI's; t("...") and N_("...") the dashboard's.
SERVER = Domain("bertd", "babel.cfg", ("Text", "N_", "translate", "tr"))
DASHBOARD = Domain("dashboard", "babel-dashboard.cfg", ("t", "N_"))
DOMAINS = (SERVER, DASHBOARD)


def _pybabel(*arguments: str) -> None:
    from babel.messages.frontend import CommandLineInterface

    CommandLineInterface().run(["pybabel", "-q", *arguments])


def extract(domain: Domain, output: Path) -> None:
    keywords = [argument for keyword in domain.keywords for argument in ("-k", keyword)]
    _pybabel("extract", "-F", str(ROOT / domain.mapping), *keywords, "--no-location", "--sort-output",
             "--project", "bertd", "--msgid-bugs-address", "", "-o", str(output), str(ROOT))


def update() -> None:
    for domain in DOMAINS:
        extract(domain, domain.pot)
        if domain.po.exists():
            _pybabel("update", "-i", str(domain.pot), "-o", str(domain.po), "-l", LOCALE, "--no-fuzzy-matching",
                     "--ignore-obsolete", "--no-wrap")
        else:
            _pybabel("init", "-i", str(domain.pot), "-o", str(domain.po), "-l", LOCALE, "--no-wrap")


def translations(po: Path) -> dict[str, str]:
    """msgid -> msgstr of a .po file's current entries (fuzzy ones count as untranslated)."""
    from babel.messages.pofile import read_po

    with po.open("rb") as handle:
        catalogue = read_po(handle)
    return {message.id: ("" if message.fuzzy else message.string) for message in catalogue
            if message.id and isinstance(message.id, str)}


def dashboard_json() -> str:
    entries = {msgid: text for msgid, text in sorted(translations(DASHBOARD.po).items()) if text}
    return json.dumps(entries, ensure_ascii=False, indent=1, sort_keys=True) + "\n"


def compile_catalogues() -> None:
    _pybabel("compile", "-d", str(LOCALE_DIR), "-D", SERVER.name, "-l", LOCALE, "--statistics")
    DASHBOARD_JSON.parent.mkdir(parents=True, exist_ok=True)
    DASHBOARD_JSON.write_text(dashboard_json(), encoding="utf-8")


def fields(template: str) -> set[str]:
    """The str.format fields of a message ('{name!r}', '{count:,}' -> name, count)."""
    try:
        return {field for _, field, _, _ in string.Formatter().parse(template) if field is not None}
    except ValueError:
        return {"<not a format string>"}


def problems() -> list[str]:
    """Everything that keeps a reader from getting every message in Chinese, one line each."""
    from babel.messages.mofile import read_mo

    found: list[str] = []
    for domain in DOMAINS:
        with tempfile.TemporaryDirectory() as scratch:
            fresh_pot = Path(scratch) / f"{domain.name}.pot"
            extract(domain, fresh_pot)
            wanted = set(translations(fresh_pot))
        committed_pot = set(translations(domain.pot)) if domain.pot.exists() else set()
        if committed_pot != wanted:
            found.append(f"{domain.pot.name} is stale: run python -m bertd.i18n.catalogues update")
        have = translations(domain.po) if domain.po.exists() else {}
        for msgid in sorted(wanted - set(have)):
            found.append(f"{domain.name}: not in {LOCALE}/{domain.po.name}: {msgid!r}")
        for msgid in sorted(wanted & set(have)):
            if not have[msgid].strip():
                found.append(f"{domain.name}: no Chinese for {msgid!r}")
            elif fields(have[msgid]) != fields(msgid):
                found.append(f"{domain.name}: the Chinese of {msgid!r} has fields {sorted(fields(have[msgid]))}, "
                             f"the English {sorted(fields(msgid))}")
        for msgid in sorted(set(have) - wanted):
            found.append(f"{domain.name}: {domain.po.name} has an entry no code uses: {msgid!r}")
    mo = SERVER.po.with_suffix(".mo")
    if not mo.exists():
        found.append(f"{mo} is missing: run python -m bertd.i18n.catalogues compile")
    else:
        with mo.open("rb") as handle:
            compiled = {message.id: message.string for message in read_mo(handle) if message.id}
        if compiled != {msgid: text for msgid, text in translations(SERVER.po).items() if text}:
            found.append(f"{mo.name} is stale: run python -m bertd.i18n.catalogues compile")
    if not DASHBOARD_JSON.exists() or DASHBOARD_JSON.read_text(encoding="utf-8") != dashboard_json():
        found.append(f"{DASHBOARD_JSON.name} is stale: run python -m bertd.i18n.catalogues compile")
    return found


def main(argv: list[str]) -> int:
    command = argv[0] if argv else "check"
    if command == "update":
        update()
    elif command == "compile":
        compile_catalogues()
    elif command == "check":
        listed = problems()
        print("\n".join(listed) or "every message has its Chinese; the compiled catalogues are current")
        return 1 if listed else 0
    else:
        print("usage: python -m bertd.i18n.catalogues update|compile|check", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
