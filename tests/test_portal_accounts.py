"""Sign-up, login/logout, password reset, invitations and their role rules."""
from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.core import mail
from django.test import Client
from django.utils import timezone

from tokenhub_portal.accounts.models import Invitation, Membership, Team

PASSWORD = "correct-horse-battery-staple"


@pytest.fixture(autouse=True)
def _fast_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def user(name, team=None, role="owner"):
    u = get_user_model().objects.create_user(name, f"{name}@example.com", PASSWORD)
    if team is not None:
        Membership.objects.create(user=u, team=team, role=role)
    return u


def signup(client, username="newbie", **extra):
    data = {"username": username, "email": f"{username}@example.com", "password1": PASSWORD,
            "password2": PASSWORD, **extra}
    return client.post("/accounts/signup/", data)


def test_signup_creates_user_team_and_lands_on_key_creation(db, seeded):
    client = Client()
    assert client.get("/accounts/signup/").status_code == 200
    response = signup(client, team_name="Rocket Lab")
    assert response.status_code == 302 and response["Location"] == "/keys/new/?welcome=1"
    u = get_user_model().objects.get(username="newbie")
    membership = Membership.objects.get(user=u)
    assert membership.role == "owner" and membership.team.name == "Rocket Lab"
    page = client.get(response["Location"]).content.decode()
    assert "Welcome!" in page and 'id="key-form"' in page


def test_signup_team_name_is_made_unique(db):
    Team.objects.create(name="newbie's team")
    signup(Client())
    assert Membership.objects.get(user__username="newbie").team.name == "newbie's team 2"


def test_signup_rejects_duplicate_email_and_weak_password(db):
    user("taken")
    response = Client().post("/accounts/signup/", {"username": "x", "email": "taken@example.com",
                                                    "password1": "123", "password2": "123"})
    assert response.status_code == 200 and not get_user_model().objects.filter(username="x").exists()


def test_signup_can_be_closed(db, settings):
    settings.SIGNUP_OPEN = False
    assert Client().get("/accounts/signup/").status_code == 403
    assert signup(Client()).status_code == 403
    assert not get_user_model().objects.filter(username="newbie").exists()


def test_login_logout_and_password_change(db):
    alice = user("alice", Team.objects.create(name="a"))
    client = Client()
    assert client.get("/accounts/login/").status_code == 200
    response = client.post("/accounts/login/", {"username": "alice", "password": PASSWORD})
    assert response.status_code == 302 and response["Location"] == "/"
    assert client.get("/").status_code == 200
    assert client.get("/accounts/password_change/").status_code == 200
    client.post("/accounts/password_change/", {"old_password": PASSWORD, "new_password1": "an0ther-secret-pw",
                                               "new_password2": "an0ther-secret-pw"})
    alice.refresh_from_db()
    assert alice.check_password("an0ther-secret-pw")
    assert client.get("/accounts/logout/").status_code == 405  # logout is POST only
    assert client.post("/accounts/logout/").status_code == 302
    assert client.get("/").status_code == 302


def test_password_reset_sends_console_style_email(db):
    user("alice")
    Client().post("/accounts/password_reset/", {"email": "alice@example.com"})
    assert len(mail.outbox) == 1
    link = re.search(r"http://testserver(/accounts/reset/\S+)", mail.outbox[0].body).group(1)
    client = Client()
    response = client.get(link, follow=True)
    assert response.status_code == 200 and "Set a new password" in response.content.decode()


def invite(client, email="new@example.com", role="member"):
    return client.post("/team/invite/", {"email": email, "role": role})


def test_invitation_flow_for_an_existing_user(db):
    team = Team.objects.create(name="alpha")
    owner, joiner = user("owner", team), user("joiner", Team.objects.create(name="own"))
    c = Client()
    c.force_login(owner)
    assert invite(c, "joiner@example.com", "admin").status_code == 302
    assert len(mail.outbox) == 1 and mail.outbox[0].to == ["joiner@example.com"]
    path = re.search(r"http://testserver(/invite/[\w-]+/)", mail.outbox[0].body).group(1)
    anon = Client()
    assert "Log in to accept" in anon.get(path).content.decode()
    assert anon.post(path)["Location"].startswith("/accounts/login/")
    j = Client()
    j.force_login(joiner)
    response = j.post(path)
    assert response.status_code == 302
    assert Membership.objects.get(user=joiner, team=team).role == "admin"
    assert j.session["team_id"] == team.id  # lands in the team just joined
    assert j.post(path).status_code == 404  # single use
    assert j.get(path).status_code == 404


def test_invited_signup_works_even_when_signup_is_closed(db, settings):
    settings.SIGNUP_OPEN = False
    team = Team.objects.create(name="alpha")
    c = Client()
    c.force_login(user("owner", team))
    invite(c, "fresh@example.com")
    token = Invitation.objects.get().token
    client = Client()
    assert client.get(f"/accounts/signup/?invite={token}").status_code == 200
    response = signup(client, "fresh", invite=token)
    assert response.status_code == 302
    m = Membership.objects.get(user__username="fresh")
    assert m.team == team and m.role == "member"
    assert Team.objects.count() == 1  # no personal team for an invitee


def test_invitation_rules(db):
    team, other = Team.objects.create(name="alpha"), Team.objects.create(name="bravo")
    owner, admin, member = user("owner", team), user("admin", team, "admin"), user("member", team, "member")
    outsider = user("outsider", other)
    m = Client()
    m.force_login(member)
    assert invite(m).status_code == 403
    a = Client()
    a.force_login(admin)
    assert invite(a, role="admin").status_code == 400  # admins invite members only (choice not offered)
    assert invite(a, role="owner").status_code == 400
    assert invite(a).status_code == 302
    invitation = Invitation.objects.get()
    o = Client()
    o.force_login(outsider)
    assert o.post(f"/team/invitations/{invitation.pk}/revoke/").status_code == 404
    ow = Client()
    ow.force_login(owner)
    assert ow.post(f"/team/invitations/{invitation.pk}/revoke/").status_code == 302
    invitation.refresh_from_db()
    assert not invitation.pending
    assert Client().get(f"/invite/{invitation.token}/").status_code == 404


def test_expired_invitation_is_refused(db):
    team = Team.objects.create(name="alpha")
    inv = Invitation.objects.create(team=team, email="x@example.com", token="t" * 43,
                                    expires_at=timezone.now() - timedelta(minutes=1))
    c = Client()
    c.force_login(user("late"))
    assert c.post(f"/invite/{inv.token}/").status_code == 404
    assert not Membership.objects.filter(team=team).exists()
