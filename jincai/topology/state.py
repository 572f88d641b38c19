"""State drawn on the map: a colour per site (compliance result) and per WAN link (OSPF adjacency).

Site states are ``clean``, ``findings``, ``drift`` and ``unreachable`` (``unchecked`` for a site the
run did not cover); the colours are the compliance report's badge colours, so the map and the
tables read alike. Link states are ``up``, ``down`` and ``unknown`` (no router of the link answered).
"""

#: Site state -> (fill colour, text colour). The order is the precedence when a site has several.
SITE_STATES = {
    "unreachable": ("#6a1b9a", "#ffffff"),
    "findings": ("#c62828", "#ffffff"),
    "drift": ("#ef6c00", "#ffffff"),
    "clean": ("#2e7d32", "#ffffff"),
    "unchecked": ("#eceff1", "#1d2733"),
}
#: The compliance report's site status -> the map's site state.
REPORT_STATUS = {"passed": "clean", "failed": "findings", "drifted": "drift", "unreachable": "unreachable"}
#: Link state -> edge colour (the line style still tells primary from backup).
LINK_STATES = {"up": "#2e7d32", "down": "#c62828", "unknown": "#90a4ae"}


def site_state(results):
    """The state of one site from its hosts' results (each one of SITE_STATES or a report status).

    The worst result wins (unreachable > findings > drift > clean); no result at all is ``unchecked``.
    """
    states = {REPORT_STATUS.get(r, r) for r in results}
    unknown = states - set(SITE_STATES)
    if unknown:
        raise ValueError(f"unknown site result(s) {sorted(unknown)}; expected one of {list(SITE_STATES)}")
    return next((s for s in SITE_STATES if s in states), "unchecked")


def site_states_from_report(report):
    """``{site code: state}`` for every site of a compliance report (jincai.compliance.model)."""
    return {s["code"]: site_state([s["status"]]) for s in report.get("sites") or []}


def colours(state):
    """``(fill, text)`` colours of a site state."""
    if state not in SITE_STATES:
        raise ValueError(f"unknown site state {state!r}; expected one of {list(SITE_STATES)}")
    return SITE_STATES[state]
