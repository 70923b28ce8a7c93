"""The "same ERP client" rule of portal/services/connection_overlap.py (issue #18, point 6.3): how config values
compare, and how field labels are listed."""

from __future__ import annotations

from portal.models import Connection
from portal.services.connection_overlap import _join, erp_identity


def _identity(**values):
    return erp_identity(Connection(config_values=values))


def test_text_is_compared_trimmed_and_case_insensitively():
    assert _identity(CompanyDb="DEMO") == _identity(CompanyDb="  demo ")
    assert _identity(CompanyDb="DEMO") != _identity(CompanyDb="DEMO2")


def test_urls_are_normalised_and_numbers_compared_as_numbers():
    assert _identity(url="https://ERP.example.com:443/api/") == _identity(url="https://erp.example.com/api")
    assert _identity(url="https://erp.example.com/api") != _identity(url="https://erp.example.com/other")
    assert _identity(PageSize=50) == _identity(PageSize=50.0)
    assert _identity(PageSize=50) != _identity(PageSize=100)


def test_a_blank_value_is_the_same_as_none_at_all_but_a_flag_is_not():
    assert _identity(Region="", Company="A") == _identity(Company="a") == _identity(Region=None, Company="A ")
    assert _identity(Test=True) != _identity(Test=False) != _identity()


def test_labels_are_listed_with_and_then_counted():
    assert _join(["Name"]) == "Name"
    assert _join(["Name", "Phone"]) == "Name and Phone"
    assert _join(["A", "B", "C", "D"]) == "A, B, C and D"
    assert _join(["A", "B", "C", "D", "E"]) == "A, B, C and 2 more"
