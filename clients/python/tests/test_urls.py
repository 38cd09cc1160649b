from urllib.parse import parse_qsl, urlsplit

from usersite_client.urls import resume_url


def test_the_resume_url_names_the_epoch_and_version():
    url = resume_url("ws://host/api/v1/users/ws", "9f2c", 13)

    assert url == "ws://host/api/v1/users/ws?epoch=9f2c&version=13"


def test_the_resume_url_keeps_other_parameters_and_replaces_an_old_resume():
    url = resume_url("wss://host:8443/ws?tenant=a%26b&epoch=old&flag=&version=1", "9f2c", 13)

    parts = urlsplit(url)
    assert (parts.scheme, parts.netloc, parts.path) == ("wss", "host:8443", "/ws")
    assert parse_qsl(parts.query, keep_blank_values=True) == [
        ("tenant", "a&b"),
        ("flag", ""),
        ("epoch", "9f2c"),
        ("version", "13"),
    ]
