"""Datasette plugin loaded by `faqbot logs serve` (``--plugins-dir``): the search box of the turns table on a big log.

Datasette's own search clause is ``rowid in (select rowid from FTS where FTS match :search)`` and a table page is
ordered by its primary key, so SQLite reads every match and sorts them all before it returns the first 100: on a
year of traffic 社保卡 matches 350,000 turns and the page took 1.9 s (EXPLAIN QUERY PLAN: USE TEMP B-TREE FOR ORDER
BY). Datasette cannot be told to order a table with a primary key by rowid, which the index could follow.

This plugin serves ``?_search=`` for the tables configured under ``plugins.faqbot_search`` (with ``fts_table``; such
a table has no ``fts_table`` of its own in the metadata, so Datasette's clause is not added as well), through the
public ``filters_from_request`` hook. Its clause takes at most ``max_matches`` matches, the newest: the search index
walks its rowids newest first and stops there, so the page and its count read at most that many turns. Up to that
many the rows and the count are exactly Datasette's; beyond it the page lists the newest ``max_matches`` and says
how many turns match in all (the index counts them without reading the turns).
"""

from __future__ import annotations

from datasette import hookimpl
from datasette.filters import FilterArguments
from datasette.utils import escape_sqlite

NAME = "faqbot_search"


@hookimpl
def filters_from_request(request, database, table, datasette):
    async def inner():
        cfg = datasette.plugin_config(NAME, database=database, table=table) or {}
        fts = cfg.get("fts_table")
        if not fts:
            return None
        search = (request.args.get("_search") or "").strip()
        if not search:
            return FilterArguments([], extra_context={"supports_search": True})
        cap = int(cfg.get("max_matches", 10_000))
        db = datasette.get_database(database)
        # escape_fts: Datasette's own quoting of the search text (each word a phrase), as its search box does.
        match = f"{escape_sqlite(fts)} match escape_fts(:search)"
        total = (
            await db.execute(f"select count(*) from {escape_sqlite(fts)} where {match}", {"search": search})
        ).single_value()
        clause = f"rowid in (select rowid from {escape_sqlite(fts)} where {match} order by rowid desc limit {cap})"
        description = f'search matches "{search}"'
        if total > cap:
            description += f" (the newest {cap:,} of {total:,} matching turns)"
        return FilterArguments(
            [clause],
            params={"search": search},
            human_descriptions=[description],
            extra_context={"supports_search": True, "search": search},
        )

    return inner
