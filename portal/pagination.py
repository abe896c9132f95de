"""API pagination (kept apart from portal.api: DRF imports it while building its generics).

The parameters are declared with their bounds so that the schema states them and
portal.api's query check (which validates every query against the schema) enforces them:
a page below 1, a page size outside 1..max_page_size, or a value that is no integer is a 400
naming the parameter; a page past the last one stays DRF's 404.
"""

from typing import Any

from rest_framework.pagination import PageNumberPagination


class StandardPagination(PageNumberPagination):
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 200

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        parameters: list[dict[str, Any]] = super().get_schema_operation_parameters(view)
        bounds = {
            self.page_query_param: {"minimum": 1},
            self.page_size_query_param: {"minimum": 1, "maximum": self.max_page_size},
        }
        for parameter in parameters:
            parameter["schema"].update(bounds.get(parameter["name"], {}))
        for parameter in parameters:
            if parameter["name"] == self.page_size_query_param:
                parameter["description"] = (
                    f"Number of results to return per page (default {self.page_size}, "
                    f"at most {self.max_page_size})."
                )
        return parameters
