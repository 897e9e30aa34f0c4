"""Pages: offset/limit for keys and teams (as OpenRouter), a cursor for the request log
(keyset on (created, id): no OFFSET scans at millions of records)."""
from __future__ import annotations

from rest_framework.pagination import CursorPagination, LimitOffsetPagination
from rest_framework.response import Response


def _envelope(results_schema: dict, extra: dict) -> dict:
    return {"type": "object", "required": ["data", *extra], "properties": {"data": results_schema, **extra}}


class OffsetPage(LimitOffsetPagination):
    default_limit = 100
    max_limit = 500
    max_offset = 10**9

    def get_offset(self, request):
        return min(super().get_offset(request), self.max_offset)  # the database's OFFSET is a bigint

    def get_paginated_response(self, data):
        return Response({"data": data, "total": self.count, "offset": self.offset, "limit": self.limit})

    def get_paginated_response_schema(self, schema):
        return _envelope(schema, {"total": {"type": "integer"}, "offset": {"type": "integer"},
                                  "limit": {"type": "integer"}})


class RequestCursor(CursorPagination):
    ordering = ("-created", "-id")
    page_size = 50
    page_size_query_param = "limit"
    max_page_size = 500

    def get_paginated_response(self, data):
        return Response({"data": data, "next": self.get_next_link()})

    def get_paginated_response_schema(self, schema):
        return _envelope(schema, {"next": {"type": "string", "nullable": True, "format": "uri",
                                           "description": "URL of the next page; null on the last."}})
