"""The configured tariffs and home-charging reimbursement rates, read-only: they are
managed in the configuration file (`[[tariffs]]`, `[[reimbursements]]`), so an operator
or a script can see what prices the sessions no provider priced without the file."""

from __future__ import annotations

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from hookgate.admin.api import json_response
from hookgate.admin.contract import Operation
from hookgate.domain.tariffs import Rates, Reimbursement, Tariff


class TariffsQuery(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """No parameters: the whole configuration is one short document."""


class TariffList(msgspec.Struct, kw_only=True):
    """Tariffs and reimbursement rates in file order; the first that fits a session
    prices it (reimbursement, then charger, installation, source)."""

    tariffs: list[Tariff]
    reimbursements: list[Reimbursement]


class TariffsApi:
    """`GET /api/v1/tariffs` over the rates the configuration holds."""

    def __init__(self, rates: Rates) -> None:
        self._answer = TariffList(
            tariffs=list(rates.tariffs), reimbursements=list(rates.reimbursements)
        )

    async def tariffs(self, request: Request) -> Response:
        return json_response(self._answer)

    def operations(self) -> list[Operation]:
        return [
            Operation(
                "GET",
                "/api/v1/tariffs",
                self.tariffs,
                "listTariffs",
                "List the configured tariffs and reimbursement rates",
                "views",
                query=TariffsQuery,
                answer=TariffList,
                description="Read-only: tariffs and reimbursements are managed in the "
                "configuration file (`[[tariffs]]`, `[[reimbursements]]`) and take effect "
                "on restart. They price the sessions no provider priced, in the views, the "
                "export and money budgets.",
            )
        ]
