from .selectors import memberships_of


def portal(request):
    """The team switcher's data, for every page of the portal layout."""
    membership = getattr(request, "membership", None)
    if membership is None or not hasattr(request, "user"):
        return {}
    return {"membership": membership, "team": membership.team, "memberships": memberships_of(request.user)}
