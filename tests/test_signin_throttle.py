"""Sign-in throttling (django-axes): portal and admin, per username and per address,
a clear lockout page, reset on success, shared by every process through the database."""
from __future__ import annotations

import re
from datetime import timedelta

import httpx
import pytest
from axes.models import AccessAttempt
from django.contrib.auth import get_user_model
from django.test import Client

PASSWORD = "correct-horse-battery-staple"
LIMIT = 5  # LOGIN_FAILURE_LIMIT's default


@pytest.fixture(autouse=True)
def _fast_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def alice(db):
    return get_user_model().objects.create_user("alice", "alice@example.com", PASSWORD)


def sign_in(client, username, password, ip="10.0.0.1", path="/accounts/login/"):
    return client.post(path, {"username": username, "password": password}, REMOTE_ADDR=ip)


def signed_in(response) -> bool:
    return response.status_code == 302 and "/login/" not in response["Location"]


def assert_locked_out(response):
    assert response.status_code == 429
    page = response.content.decode()
    assert "Too many failed sign-ins" in page
    assert f"after {LIMIT} failed attempts" in page and "Try again in 15 minutes" in page


def test_username_is_locked_after_the_limit_whatever_the_address(alice):
    client = Client()
    for i in range(LIMIT - 1):
        response = sign_in(client, "alice", "wrong", ip=f"10.0.1.{i}")
        assert response.status_code == 200 and "id=\"login-form\"" in response.content.decode()
    assert_locked_out(sign_in(client, "alice", "wrong", ip="10.0.1.99"))  # the LIMIT-th failure locks
    # the right password, from an address never seen: still refused, and nobody is signed in
    assert_locked_out(sign_in(client, "alice", PASSWORD, ip="10.0.2.1"))
    assert "_auth_user_id" not in client.session
    # another account from another address is not affected
    get_user_model().objects.create_user("bob", "bob@example.com", PASSWORD)
    assert signed_in(sign_in(Client(), "bob", PASSWORD, ip="10.0.3.1"))


def test_address_is_locked_after_the_limit_whatever_the_username(alice):
    for i in range(LIMIT):
        sign_in(Client(), f"guess{i}", "wrong", ip="10.9.9.9")
    assert_locked_out(sign_in(Client(), "alice", PASSWORD, ip="10.9.9.9"))
    assert signed_in(sign_in(Client(), "alice", PASSWORD, ip="10.9.9.10"))


def test_success_resets_the_count(alice):
    for _ in range(LIMIT - 1):
        sign_in(Client(), "alice", "wrong")
    assert signed_in(sign_in(Client(), "alice", PASSWORD))
    for _ in range(LIMIT - 1):
        sign_in(Client(), "alice", "wrong")
    assert signed_in(sign_in(Client(), "alice", PASSWORD))  # would be locked without the reset


def test_admin_login_counts_and_locks_too(alice):
    alice.is_staff = alice.is_superuser = True
    alice.save()
    for _ in range(LIMIT - 1):
        assert sign_in(Client(), "alice", "wrong", path="/admin/login/").status_code == 200
    sign_in(Client(), "alice", "wrong")  # the portal and the admin share the count
    assert_locked_out(sign_in(Client(), "alice", PASSWORD, path="/admin/login/"))


def test_lock_lifts_after_the_cool_off(alice):
    for _ in range(LIMIT):
        sign_in(Client(), "alice", "wrong")
    assert_locked_out(sign_in(Client(), "alice", PASSWORD))
    AccessAttempt.objects.update(attempt_time=AccessAttempt.objects.first().attempt_time - timedelta(minutes=16))
    assert signed_in(sign_in(Client(), "alice", PASSWORD))


def test_limit_and_cool_off_are_configurable(alice, settings):
    settings.AXES_FAILURE_LIMIT = 2
    settings.AXES_COOLOFF_TIME = timedelta(minutes=3)
    sign_in(Client(), "alice", "wrong")
    sign_in(Client(), "alice", "wrong")
    response = sign_in(Client(), "alice", PASSWORD)
    assert response.status_code == 429 and "Try again in 3 minutes" in response.content.decode()


def test_client_address_behind_trusted_proxies(alice, settings):
    """Behind one proxy the client is the right-most X-Forwarded-For entry; a forged entry
    further left does not give a guesser a fresh address."""
    settings.TRUSTED_PROXY_COUNT = 1
    for i in range(LIMIT):
        Client().post("/accounts/login/", {"username": f"guess{i}", "password": "x"}, REMOTE_ADDR="10.0.0.254",
                      HTTP_X_FORWARDED_FOR=f"1.2.3.{i}, 203.0.113.7")
    locked = Client().post("/accounts/login/", {"username": "alice", "password": PASSWORD},
                           REMOTE_ADDR="10.0.0.254", HTTP_X_FORWARDED_FOR="203.0.113.7")
    assert locked.status_code == 429
    other = Client().post("/accounts/login/", {"username": "alice", "password": PASSWORD},
                          REMOTE_ADDR="10.0.0.254", HTTP_X_FORWARDED_FOR="203.0.113.8")
    assert signed_in(other)


def test_the_api_is_not_throttled_by_sign_in_failures(api, make_key):
    """Keys are not passwords of this form: the API router is outside Django's middleware."""
    for i in range(LIMIT):
        sign_in(Client(), f"guess{i}", "wrong", ip="127.0.0.1")
    key = make_key().plaintext
    assert api.get("/api/v1/models", key).status_code == 200


def _browser_sign_in(url: str, username: str, password: str) -> httpx.Response:
    with httpx.Client(base_url=url, timeout=10) as client:
        page = client.get("/accounts/login/")
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
        return client.post("/accounts/login/", data={"username": username, "password": password,
                                                     "csrfmiddlewaretoken": token},
                           headers={"Referer": url + "/accounts/login/"})


def test_lockout_holds_across_gateway_processes(transactional_db, gateway_pair):
    """Failures counted by one process lock the account in the other (database handler)."""
    get_user_model().objects.create_user("carol", "carol@example.com", PASSWORD)
    first, second = gateway_pair
    for _ in range(LIMIT - 1):
        assert _browser_sign_in(first, "carol", "wrong").status_code == 200
    assert _browser_sign_in(second, "carol", "wrong").status_code == 429  # the LIMIT-th, seen by the other
    response = _browser_sign_in(first, "carol", PASSWORD)
    assert response.status_code == 429 and "Too many failed sign-ins" in response.text
