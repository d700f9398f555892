"""A paginator for admin lists over very large tables: it never counts more than it shows.

Django's `Paginator` runs `SELECT COUNT(*)` over the whole filtered queryset on every page. On a
table of a million rows that is a full scan per click, and it gets slower as the table grows.

`CappedCountPaginator` counts at most `cap + 1` rows instead, through a sliced subquery with the
ordering and the selected columns stripped::

    SELECT COUNT(*) FROM (SELECT id FROM ... WHERE <filters> LIMIT cap + 1) subquery

so a page costs the same whether the filters match a hundred rows or a million. It is exact
below the cap. Above it, `count` is `cap`, `capped` is true and the list says "10000+"; pages
past the cap are not offered (deep OFFSET pages are slow anyway — narrow the filters instead).

Why not PostgreSQL's `pg_class.reltuples` estimate? It only describes the unfiltered table, it is
stale after bulk loads until the next ANALYZE, and SQLite has nothing like it. The cap is simple,
never wrong below it, and behaves the same on both databases.
"""

from __future__ import annotations

from typing import Any, ClassVar

from django.core.paginator import Paginator
from django.db.models import QuerySet
from django.utils.functional import cached_property


class CappedCountPaginator(Paginator):
    cap: ClassVar[int] = 10_000

    @cached_property
    def _capped_count(self) -> tuple[int, bool]:
        object_list: Any = self.object_list
        if isinstance(object_list, QuerySet):
            # values("pk") drops annotations and columns from the subquery; order_by() drops a
            # sort the count does not need.
            seen = object_list.order_by().values("pk")[: self.cap + 1].count()
        else:
            seen = len(object_list)
        return min(seen, self.cap), seen > self.cap

    @cached_property
    def count(self) -> int:
        return self._capped_count[0]

    @property
    def capped(self) -> bool:
        """True when more rows match than were counted: show the count as "cap+"."""
        return self._capped_count[1]
