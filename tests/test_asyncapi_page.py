"""/asyncapi/: the AsyncAPI document as a page, rendered on the server."""

from __future__ import annotations

import json
import re

import aiohttp_jinja2
import pytest
from markupsafe import escape

from common.schemas import CLIENT_ACTIONS, SERVER_ACTIONS
from server.asyncapi import asyncapi_document
from server.asyncapi_html import protocol_view
from server.auth import SESSION_COOKIE
from tests.helpers import log_in


async def test_the_page_shows_servers_security_messages_schemas_and_examples(client):
    response = await client.get("/asyncapi/")
    assert response.status == 200
    assert response.content_type == "text/html"
    page = await response.text()
    # The server as reached, with the cookie that authenticates its socket.
    assert f"ws://127.0.0.1:{client.port}/ws/dashboard/{{dashboardId}}/" in page
    assert f"cookie <code>{SESSION_COOKIE}</code>" in page
    assert 'href="#security-session"' in page and 'id="security-session"' in page
    for action in CLIENT_ACTIONS + SERVER_ACTIONS:
        assert f'id="message-{action}"' in page, action
    # Each message's examples as JSON, escaped.
    assert escape(json.dumps({"action": "subscribe", "payload": [1, 2]}, indent=2)) in page
    # A schema's table: field, type (nested schemas linked), required, description, limits.
    resume = page[page.index('id="schema-Resume"') :]
    resume = resume[: resume.index("</section>")]
    row = re.search(r"<tr>\s*<td><code>positions</code></td>(.*?)</tr>", resume, re.S)
    assert row is not None
    cells = [re.sub(r"\s+", " ", cell).strip() for cell in re.findall(r"<td>(.*?)</td>", row.group(1), re.S)]
    assert cells == [
        'array of <a href="#schema-Position"><code>Position</code></a>',
        "yes",
        "",
        "1 to 500 items",
    ]
    assert 'id="schema-Position"' in page
    assert "one of: &#34;5m&#34;, &#34;1h&#34;, &#34;24h&#34;, &#34;7d&#34;" in page
    # No script of its own (only the theme's; JSON data blocks run nothing), nothing from elsewhere.
    scripts = [tag for tag in re.findall(r"<script[^>]*>", page) if 'type="application/json"' not in tag]
    assert scripts == ['<script src="/static/theme-auto.js">']
    assert "http://" not in page.replace(f"ws://127.0.0.1:{client.port}", "") and "https://" not in page


async def test_every_schema_of_the_document_has_its_table(client):
    page = await (await client.get("/asyncapi/")).text()
    # Every link within the page leads somewhere on it.
    targets = set(re.findall(r'href="#([^"]+)"', page))
    assert targets and targets <= set(re.findall(r'id="([^"]+)"', page))
    schemas = asyncapi_document("h", "http")["components"]["schemas"]
    for name, schema in schemas.items():
        assert f'id="schema-{name}"' in page, name
        for field in schema.get("properties", {}):
            assert f"<td><code>{field}</code></td>" in page, (name, field)


async def test_text_from_the_document_is_escaped(app, client):
    """Descriptions are HTML-escaped: the template is autoescaped, nothing is marked safe."""
    await client.get("/asyncapi/")  # the app has started
    document = asyncapi_document("127.0.0.1", "http")
    hostile = "`<script>alert(1)</script>` <script>alert(1)</script>"
    document["components"]["messages"]["ping"]["summary"] = hostile
    document["components"]["schemas"]["Position"]["properties"]["metric_id"]["description"] = hostile
    document["components"]["messages"]["ping"]["examples"][0]["payload"]["payload"] = {"t": hostile}
    env = aiohttp_jinja2.get_env(app)
    page = env.get_template("asyncapi.html").render(
        protocol=protocol_view(document), user=None, theme=None, csrf_field="x", csrf_token="y"
    )
    assert "<script>alert(1)</script>" not in page
    assert "<code>&lt;script&gt;alert(1)&lt;/script&gt;</code> &lt;script&gt;alert(1)&lt;/script&gt;" in page


@pytest.mark.parametrize("path", ["/asyncapi.json", "/asyncapi/"])
async def test_the_page_is_open_to_whoever_may_read_the_json(client, make_user, path):
    """The same access rule for both: public (the protocol holds no data)."""
    anonymous = await client.get(path, allow_redirects=False)
    assert anonymous.status == 200
    await make_user("alice")
    await log_in(client, "alice")
    logged_in = await client.get(path, allow_redirects=False)
    assert logged_in.status == 200


async def test_the_page_links_the_json_and_the_playground_links_the_page(client, make_user):
    page = await (await client.get("/asyncapi/")).text()
    assert 'href="/asyncapi.json"' in page
    assert 'href="/playground/"' not in page  # only for those who may use it
    await make_user("alice")
    await log_in(client, "alice")
    page = await (await client.get("/asyncapi/")).text()
    assert 'href="/playground/"' in page
    playground = await (await client.get("/playground/")).text()
    assert 'href="/asyncapi/"' in playground and 'href="/asyncapi.json"' in playground
