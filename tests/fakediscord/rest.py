"""The REST API under /api/v10: the routes a discord.py bot uses, answered like Discord answers them.

Bot routes demand `Authorization: Bot <token>`; interaction and webhook routes are authorised by
the token in their path, as in https://discord.com/developers/docs/interactions/receiving-and-responding.
Any other route answers 404 with a JSON error and is logged and recorded, so gaps are visible.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn

from aiohttp import BodyPartReader, web

from . import errors
from .errors import ApiError
from .gateway import Gateway, application_flags
from .models import (
    CallbackType,
    Channel,
    ChannelType,
    Intent,
    InteractionResponse,
    InteractionType,
    Message,
    MessageFlag,
    Permission,
    PostAttempt,
)
from .payloads import channel_payload, gateway_message_payload, message_payload, user_payload
from .ratelimits import ChannelRateLimits
from .state import FakeState, InteractionResult
from .validation import check_autocomplete_result, check_command_list, check_message_body
from .world import World

log = logging.getLogger(__name__)

API = "/api/v10"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
INTERNAL_ERRORS = web.AppKey("internal_errors", list[str])


def json_response(data: Any, *, status: int = 200) -> web.Response:
    # Exactly "application/json", no charset: discord.py only decodes bodies with that header.
    return web.Response(
        body=json.dumps(data).encode(), status=status, headers={"Content-Type": "application/json"}
    )


@web.middleware
async def discord_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Render ApiError as Discord's JSON error body; report the fake's own bugs without a 5xx.

    discord.py retries 5xx answers with back-off sleeps, which would turn a fake bug into a slow
    test, so internal errors are answered with a 400 that names them instead.
    """
    try:
        return await handler(request)
    except ApiError as error:
        return json_response(error.body, status=error.status)
    except web.HTTPException:
        raise
    except Exception as error:
        log.exception("fake Discord: error handling %s %s", request.method, request.path)
        request.app[INTERNAL_ERRORS].append(f"{request.method} {request.path}: {error!r}")
        return json_response({"message": f"fake Discord internal error: {error!r}", "code": 0}, status=400)


def _no_content() -> web.Response:
    return web.Response(status=204)


class RestApi:
    def __init__(
        self,
        state: FakeState,
        gateway: Gateway,
        *,
        token: str,
        allowed_privileged_intents: int,
        ack_deadline: float,
        rate_limits: ChannelRateLimits | None = None,
    ) -> None:
        self.state = state
        # Discord's per-channel limit on message posts, when the fake enforces it (None: no limit).
        self.rate_limits = rate_limits
        self.gateway = gateway
        self.token = token
        self.allowed_privileged_intents = allowed_privileged_intents
        self.ack_deadline = ack_deadline

    @property
    def world(self) -> World:
        return self.state.world

    def routes(self) -> list[web.RouteDef]:
        bot = self._bot_route
        return [
            web.get(f"{API}/gateway", self.get_gateway),
            web.get(f"{API}/gateway/bot", bot(self.get_gateway_bot)),
            web.get(f"{API}/users/@me", bot(self.get_me)),
            web.post(f"{API}/users/@me/channels", bot(self.create_dm)),
            web.get(f"{API}/users/{{user_id}}", bot(self.get_user)),
            web.get(f"{API}/oauth2/applications/@me", bot(self.get_application)),
            web.get(f"{API}/channels/{{channel_id}}", bot(self.get_channel)),
            web.post(f"{API}/channels/{{channel_id}}/messages", bot(self.create_message)),
            web.get(f"{API}/channels/{{channel_id}}/messages/{{message_id}}", bot(self.get_message)),
            web.patch(f"{API}/channels/{{channel_id}}/messages/{{message_id}}", bot(self.edit_message)),
            web.delete(f"{API}/channels/{{channel_id}}/messages/{{message_id}}", bot(self.delete_message)),
            web.post(f"{API}/channels/{{channel_id}}/typing", bot(self.trigger_typing)),
            web.get(f"{API}/applications/{{app_id}}/commands", bot(self.get_commands)),
            web.put(f"{API}/applications/{{app_id}}/commands", bot(self.put_commands)),
            web.get(f"{API}/applications/{{app_id}}/guilds/{{guild_id}}/commands", bot(self.get_commands)),
            web.put(f"{API}/applications/{{app_id}}/guilds/{{guild_id}}/commands", bot(self.put_commands)),
            web.post(f"{API}/interactions/{{interaction_id}}/{{token}}/callback", self.interaction_callback),
            web.post(f"{API}/webhooks/{{app_id}}/{{token}}", self.create_followup),
            web.get(f"{API}/webhooks/{{app_id}}/{{token}}/messages/{{message_id}}", self.get_webhook_message),
            web.patch(
                f"{API}/webhooks/{{app_id}}/{{token}}/messages/{{message_id}}", self.edit_webhook_message
            ),
            web.delete(
                f"{API}/webhooks/{{app_id}}/{{token}}/messages/{{message_id}}", self.delete_webhook_message
            ),
            web.route("*", "/{tail:.*}", self.unhandled),
        ]

    def _bot_route(self, handler: Handler) -> Handler:
        async def authorised(request: web.Request) -> web.StreamResponse:
            if request.headers.get("Authorization") != f"Bot {self.token}":
                raise errors.unauthorized()
            return await handler(request)

        return authorised

    async def unhandled(self, request: web.Request) -> web.StreamResponse:
        log.warning("fake Discord: no route for %s %s", request.method, request.path)
        self.state.unhandled_requests.append((request.method, request.path))
        raise ApiError(
            404, 0, f"404: Not Found (fake Discord does not model {request.method} {request.path})"
        )

    # -- helpers -----------------------------------------------------------------------------------

    async def _body(self, request: web.Request) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """The JSON body, from either application/json or multipart `payload_json`, and any uploads."""
        if request.content_type.startswith("multipart/"):
            body: dict[str, Any] = {}
            attachments: list[dict[str, Any]] = []
            reader = await request.multipart()
            while (part := await reader.next()) is not None:
                if not isinstance(part, BodyPartReader):
                    continue
                if part.name == "payload_json":
                    body = json.loads(await part.text())
                else:
                    data = await part.read()
                    attachment_id = self.state.next_id()
                    self.state.uploads[str(attachment_id)] = data
                    url = f"https://cdn.discordapp.com/attachments/0/{attachment_id}/{part.filename}"
                    attachments.append(
                        {
                            "id": str(attachment_id),
                            "filename": part.filename or "file",
                            "size": len(data),
                            "url": url,
                            "proxy_url": url,
                            "content_type": part.headers.get("Content-Type"),
                        }
                    )
            return body, attachments
        if not request.can_read_body:
            return {}, []
        try:
            return await request.json(), []
        except json.JSONDecodeError:
            raise ApiError(400, 50109, "The request body contains invalid JSON.") from None

    def _channel(self, request: web.Request) -> Channel:
        channel = self.state.channel(int(request.match_info["channel_id"]))
        if channel is None:
            raise errors.unknown_channel()
        return channel

    def _message(self, channel: Channel, message_id: str) -> Message:
        message = self.state.messages.get(int(message_id)) if message_id.isdigit() else None
        if message is None or message.deleted or message.channel_id != channel.id:
            raise errors.unknown_message()
        return message

    def _payload(self, message: Message) -> dict[str, Any]:
        return message_payload(message, self.world, by_id=self.state.messages)

    async def _announce(self, event: str, message: Message) -> None:
        """Dispatch MESSAGE_CREATE/UPDATE to the bot if its intents ask for that kind of message."""
        session = self.gateway.session_for(message.guild_id)
        if session is None or message.ephemeral:
            return
        needed = Intent.GUILD_MESSAGES if message.guild_id is not None else Intent.DIRECT_MESSAGES
        if not session.intents & needed:
            return
        payload = gateway_message_payload(message, self.world, by_id=self.state.messages, with_content=True)
        await self.gateway.dispatch(event, payload)

    async def _announce_delete(self, message: Message) -> None:
        session = self.gateway.session_for(message.guild_id)
        if session is None or message.ephemeral:
            return
        data = {"id": str(message.id), "channel_id": str(message.channel_id)}
        if message.guild_id is not None:
            data["guild_id"] = str(message.guild_id)
        await self.gateway.dispatch("MESSAGE_DELETE", data)

    # -- identity ----------------------------------------------------------------------------------

    async def get_gateway(self, request: web.Request) -> web.StreamResponse:
        return json_response({"url": self.gateway.url})

    async def get_gateway_bot(self, request: web.Request) -> web.StreamResponse:
        limit = {"total": 1000, "remaining": 999, "reset_after": 0, "max_concurrency": 1}
        return json_response(
            {"url": self.gateway.url, "shards": self.gateway.recommended_shards, "session_start_limit": limit}
        )

    async def get_me(self, request: web.Request) -> web.StreamResponse:
        me = {**user_payload(self.world.users.bot), "verified": True, "mfa_enabled": False, "flags": 0}
        return json_response(me)

    async def get_user(self, request: web.Request) -> web.StreamResponse:
        user_id = request.match_info["user_id"]
        user = self.world.user(int(user_id)) if user_id.isdigit() else None
        if user is None:
            raise errors.not_found(10013, "Unknown User")
        return json_response(user_payload(user))

    async def get_application(self, request: web.Request) -> web.StreamResponse:
        world = self.world
        return json_response(
            {
                "id": str(world.application_id),
                "name": world.users.bot.username,
                "icon": None,
                "description": "",
                "summary": "",
                "type": None,
                "bot_public": True,
                "bot_require_code_grant": False,
                "bot": user_payload(world.users.bot),
                "owner": user_payload(world.users.owner),
                "team": None,
                "verify_key": "0" * 64,
                "flags": application_flags(self.allowed_privileged_intents),
                "hook": True,
                "interactions_endpoint_url": None,
                "redirect_uris": [],
                "tags": [],
                "approximate_guild_count": 1,
            }
        )

    # -- channels and messages -------------------------------------------------------------------------

    async def create_dm(self, request: web.Request) -> web.StreamResponse:
        body, _ = await self._body(request)
        user = self.world.user(int(body.get("recipient_id") or 0))
        if user is None:
            raise errors.not_found(10013, "Unknown User")
        return json_response(channel_payload(self.state.dm_channel(user), self.world))

    async def get_channel(self, request: web.Request) -> web.StreamResponse:
        return json_response(channel_payload(self._channel(request), self.world))

    async def create_message(self, request: web.Request) -> web.StreamResponse:
        arrived = time.monotonic()
        body: dict[str, Any] = {}
        try:
            response = await self._create_message(request, body)
        except ApiError as error:
            self._record_post(request, arrived, error.status, body)
            raise
        self._record_post(request, arrived, response.status, body)
        return response

    def _record_post(self, request: web.Request, at: float, status: int, body: dict[str, Any]) -> None:
        channel_id = request.match_info["channel_id"]
        self.state.post_attempts.append(
            PostAttempt(int(channel_id) if channel_id.isdigit() else 0, at, status, body.get("nonce"))
        )

    async def _create_message(self, request: web.Request, seen: dict[str, Any]) -> web.StreamResponse:
        """Create the message; `seen` receives the body as read, for the record of attempts."""
        body, attachments = await self._body(request)
        seen.update(body)
        channel = self._channel(request)
        if channel.type is not ChannelType.DM and (
            not (self.world.permissions(self.world.users.bot) & Permission.SEND_MESSAGES)
            or channel.id in self.world.muted_channel_ids
        ):
            raise ApiError(403, 50013, "Missing Permissions")
        limits = self.state.injected_rate_limits.get(channel.id)
        if limits:
            # Discord's 429 body (https://discord.com/developers/docs/topics/rate-limits); discord.py
            # only trusts a 429 that came through Discord's proxy, hence `Via`.
            retry_after = limits.pop(0)
            data = {"message": "You are being rate limited.", "retry_after": retry_after, "global": False}
            response = json_response(data, status=429)
            response.headers.update({"Via": "1.1 google", "Retry-After": str(max(1, round(retry_after)))})
            return response
        limit_headers: dict[str, str] = {}
        if self.rate_limits is not None:
            verdict = self.rate_limits.check(channel.id)
            limit_headers = verdict.headers
            if not verdict.allowed:
                data = {
                    "message": "You are being rate limited.",
                    "retry_after": round(verdict.retry_after, 3),
                    "global": False,
                }
                response = json_response(data, status=429)
                response.headers.update(limit_headers)
                response.headers.update(
                    {
                        "Via": "1.1 google",
                        "Retry-After": str(max(1, round(verdict.retry_after))),
                        "X-RateLimit-Scope": "user",
                    }
                )
                return response
        response = await self._accept_message(channel, body, attachments)
        response.headers.update(limit_headers)
        return response

    async def _accept_message(
        self, channel: Channel, body: dict[str, Any], attachments: list[dict[str, Any]]
    ) -> web.Response:
        check_message_body(body, has_files=bool(attachments))
        nonce = body.get("nonce")
        if nonce is not None and body.get("enforce_nonce"):
            # "If another message was created by the same author with the same nonce, that message will
            # be returned and no new message will be created" (Create Message, enforce_nonce).
            earlier = self.state.message_with_nonce(channel.id, self.world.users.bot.id, nonce)
            if earlier is not None:
                return json_response(self._payload(earlier))
        reference = body.get("message_reference")
        if reference and reference.get("fail_if_not_exists", True):
            referenced = self.state.messages.get(int(reference.get("message_id") or 0))
            if referenced is None or referenced.deleted:
                form = errors.FormErrors()
                form.add(("message_reference",), "MESSAGE_REFERENCE_UNKNOWN_MESSAGE", "Unknown message")
                form.raise_if_any()
        message = self.state.add_bot_message(channel, body, attachments=attachments)
        await self.state.changes.notify()
        await self._announce("MESSAGE_CREATE", message)
        return json_response(self._payload(message))

    async def get_message(self, request: web.Request) -> web.StreamResponse:
        channel = self._channel(request)
        return json_response(self._payload(self._message(channel, request.match_info["message_id"])))

    async def edit_message(self, request: web.Request) -> web.StreamResponse:
        channel = self._channel(request)
        message = self._message(channel, request.match_info["message_id"])
        if message.author.id != self.world.users.bot.id:
            raise errors.cannot_edit_others_message()
        body, _ = await self._body(request)
        check_message_body(body, is_edit=True)
        self.state.edit_message(message, body)
        await self.state.changes.notify()
        await self._announce("MESSAGE_UPDATE", message)
        return json_response(self._payload(message))

    async def delete_message(self, request: web.Request) -> web.StreamResponse:
        channel = self._channel(request)
        message = self._message(channel, request.match_info["message_id"])
        bot = self.world.users.bot
        if message.author.id != bot.id and not self.world.permissions(bot) & Permission.MANAGE_MESSAGES:
            raise ApiError(403, 50013, "Missing Permissions")
        message.deleted = True
        await self.state.changes.notify()
        await self._announce_delete(message)
        return _no_content()

    async def trigger_typing(self, request: web.Request) -> web.StreamResponse:
        self.state.typing_channel_ids.append(self._channel(request).id)
        await self.state.changes.notify()
        return _no_content()

    # -- application commands -------------------------------------------------------------------------

    def _command_scope(self, request: web.Request) -> int | None:
        if request.match_info["app_id"] != str(self.world.application_id):
            raise errors.unknown_application()
        guild_id = request.match_info.get("guild_id")
        if guild_id is None:
            return None
        if not guild_id.isdigit() or self.world.guild_by_id(int(guild_id)) is None:
            # A guild the bot is not in is one it lacks access to.
            raise ApiError(403, 50001, "Missing Access")
        return int(guild_id)

    def _command_payloads(self, guild_id: int | None) -> list[dict[str, Any]]:
        out = []
        for command in self.state.commands.get(guild_id, []):
            payload = {
                "default_member_permissions": None,
                "nsfw": False,
                "options": [],
                **command.payload,
                "id": str(command.id),
                "application_id": str(self.world.application_id),
                "version": str(command.id),
            }
            if guild_id is not None:
                payload["guild_id"] = str(guild_id)
            out.append(payload)
        return out

    async def get_commands(self, request: web.Request) -> web.StreamResponse:
        return json_response(self._command_payloads(self._command_scope(request)))

    async def put_commands(self, request: web.Request) -> web.StreamResponse:
        guild_id = self._command_scope(request)
        try:
            body = await request.json()
        except json.JSONDecodeError:
            raise ApiError(400, 50109, "The request body contains invalid JSON.") from None
        if not isinstance(body, list):
            raise ApiError(
                400,
                50035,
                "Invalid Form Body",
                {"_errors": [{"code": "BASE_TYPE_ARRAY", "message": "Must be an array."}]},
            )
        check_command_list(body)
        self.state.set_commands(guild_id, body)
        await self.state.changes.notify()
        return json_response(self._command_payloads(guild_id))

    # -- interactions ---------------------------------------------------------------------------------

    def _interaction_for_webhook(self, request: web.Request) -> InteractionResult:
        interaction = self.state.interaction_by_token(request.match_info["token"])
        if interaction is None or request.match_info["app_id"] != str(self.world.application_id):
            raise errors.unknown_webhook()
        return interaction

    async def _refused(self, interaction: InteractionResult, error: ApiError) -> NoReturn:
        """Record that Discord refused one of the bot's answers (tests report it), then refuse it."""
        interaction.rejected.append(error)
        await self.state.changes.notify()
        raise error

    def _check_callback(
        self, interaction: InteractionResult, callback_type: int, data: dict[str, Any], *, has_files: bool
    ) -> None:
        # Discord only accepts the initial response within 3 seconds of the interaction.
        if time.monotonic() - interaction.created_monotonic > self.ack_deadline:
            raise errors.unknown_interaction()
        if interaction.acknowledged:
            raise errors.already_acknowledged()
        if interaction.type is InteractionType.APPLICATION_COMMAND_AUTOCOMPLETE:
            allowed = {CallbackType.APPLICATION_COMMAND_AUTOCOMPLETE_RESULT}
        else:
            allowed = {
                CallbackType.CHANNEL_MESSAGE_WITH_SOURCE,
                CallbackType.DEFERRED_CHANNEL_MESSAGE_WITH_SOURCE,
                CallbackType.MODAL,
            }
        if callback_type not in allowed:
            form = errors.FormErrors()
            form.add(
                ("type",),
                "INTERACTION_RESPONSE_TYPE_INVALID",
                f"Interaction response type {callback_type} is not valid here",
            )
            form.raise_if_any()
        if callback_type == CallbackType.CHANNEL_MESSAGE_WITH_SOURCE:
            check_message_body(data, has_files=has_files)
        elif callback_type == CallbackType.APPLICATION_COMMAND_AUTOCOMPLETE_RESULT:
            check_autocomplete_result(data)

    async def interaction_callback(self, request: web.Request) -> web.StreamResponse:
        interaction_id = request.match_info["interaction_id"]
        interaction = self.state.interactions.get(int(interaction_id)) if interaction_id.isdigit() else None
        if interaction is None or interaction.token != request.match_info["token"]:
            raise errors.unknown_interaction()
        body, attachments = await self._body(request)
        callback_type = int(body.get("type") or 0)
        data = dict(body.get("data") or {})
        try:
            self._check_callback(interaction, callback_type, data, has_files=bool(attachments))
        except ApiError as error:
            await self._refused(interaction, error)

        message: Message | None = None
        if callback_type == CallbackType.CHANNEL_MESSAGE_WITH_SOURCE:
            message = self.state.add_bot_message(
                interaction.channel, data, attachments=attachments, interaction=interaction
            )
        elif callback_type == CallbackType.DEFERRED_CHANNEL_MESSAGE_WITH_SOURCE:
            ephemeral = int(data.get("flags") or 0) & MessageFlag.EPHEMERAL
            message = self.state.add_bot_message(
                interaction.channel, {}, interaction=interaction, flags=MessageFlag.LOADING | ephemeral
            )

        if message is not None:
            interaction.original_message_id = message.id
        interaction.responses.append(
            InteractionResponse(
                kind="callback",
                type=callback_type,
                data=data,
                message_id=None if message is None else message.id,
            )
        )
        await self.state.changes.notify()
        if message is not None:
            await self._announce("MESSAGE_CREATE", message)

        if request.query.get("with_response") not in ("1", "true", "True"):
            return _no_content()
        callback: dict[str, Any] = {"id": str(interaction.id), "type": int(interaction.type)}
        resource: dict[str, Any] = {"type": callback_type}
        if message is not None:
            callback["response_message_id"] = str(message.id)
            callback["response_message_loading"] = bool(message.flags & MessageFlag.LOADING)
            callback["response_message_ephemeral"] = message.ephemeral
            resource["message"] = self._payload(message)
        return json_response({"interaction": callback, "resource": resource})

    async def create_followup(self, request: web.Request) -> web.StreamResponse:
        interaction = self._interaction_for_webhook(request)
        if (
            not interaction.acknowledged
            or interaction.type is InteractionType.APPLICATION_COMMAND_AUTOCOMPLETE
        ):
            raise errors.unknown_webhook()
        body, attachments = await self._body(request)
        try:
            check_message_body(body, has_files=bool(attachments))
        except ApiError as error:
            await self._refused(interaction, error)
        original = interaction.message
        if original is not None and original.flags & MessageFlag.LOADING:
            # After a deferral, the first followup fills in the "thinking…" message rather than
            # posting a second one, keeping the deferral's ephemerality.
            message = self.state.edit_message(original, body)
            message.attachments = attachments
            message.edited_timestamp = None
            event = "MESSAGE_UPDATE"
        else:
            flags = int(body.get("flags") or 0) & MessageFlag.EPHEMERAL
            message = self.state.add_bot_message(
                interaction.channel, body, attachments=attachments, interaction=interaction, flags=flags
            )
            interaction.followup_ids.append(message.id)
            event = "MESSAGE_CREATE"
        interaction.responses.append(InteractionResponse(kind="followup", data=body, message_id=message.id))
        await self.state.changes.notify()
        await self._announce(event, message)
        if request.query.get("wait") in ("1", "true", "True"):
            return json_response(self._payload(message))
        return _no_content()

    def _webhook_message(self, interaction: InteractionResult, message_id: str) -> Message:
        if message_id == "@original":
            message = interaction.message
        elif message_id.isdigit() and int(message_id) in interaction.followup_ids:
            message = self.state.messages.get(int(message_id))
        else:
            message = None
        if message is None or message.deleted:
            raise errors.unknown_message()
        return message

    async def get_webhook_message(self, request: web.Request) -> web.StreamResponse:
        interaction = self._interaction_for_webhook(request)
        message = self._webhook_message(interaction, request.match_info["message_id"])
        return json_response(self._payload(message))

    async def edit_webhook_message(self, request: web.Request) -> web.StreamResponse:
        interaction = self._interaction_for_webhook(request)
        message = self._webhook_message(interaction, request.match_info["message_id"])
        body, attachments = await self._body(request)
        try:
            check_message_body(body, is_edit=True)
        except ApiError as error:
            await self._refused(interaction, error)
        self.state.edit_message(message, body)
        if attachments:
            message.attachments = attachments
        interaction.responses.append(InteractionResponse(kind="edit", data=body, message_id=message.id))
        await self.state.changes.notify()
        await self._announce("MESSAGE_UPDATE", message)
        return json_response(self._payload(message))

    async def delete_webhook_message(self, request: web.Request) -> web.StreamResponse:
        interaction = self._interaction_for_webhook(request)
        message = self._webhook_message(interaction, request.match_info["message_id"])
        message.deleted = True
        interaction.responses.append(InteractionResponse(kind="delete", data={}, message_id=message.id))
        await self.state.changes.notify()
        await self._announce_delete(message)
        return _no_content()
