from urllib.parse import parse_qsl, urlsplit

from usersite_client.urls import parameter_names, resume_url, with_parameters


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


def test_a_parameter_set_to_none_is_left_out_and_the_others_kept():
    url = with_parameters("ws://host/ws?tenant=a&search=old&limit=5", search="ada", limit=None)

    assert url == "ws://host/ws?tenant=a&search=ada"


def test_the_parameter_names_of_a_url_include_blank_ones():
    assert parameter_names("ws://host/ws?tenant=a&limit=") == {"tenant", "limit"}
