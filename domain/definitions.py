"""Agent definitions: character, model, tools and manners, compiled into a system prompt."""

from __future__ import annotations

import json
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from domain.errors import Invalid
from domain.ids import check_name
from domain.memories import MemoryConfig

Text = Annotated[str, StringConstraints(max_length=4_000)]
Short = Annotated[str, StringConstraints(min_length=1, max_length=200)]
Level = Annotated[float, Field(ge=0.0, le=1.0)]


class BigFive(BaseModel):
    """Big-Five traits, each 0..1."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    openness: Level = 0.5
    conscientiousness: Level = 0.5
    extraversion: Level = 0.5
    agreeableness: Level = 0.5
    neuroticism: Level = 0.5


class Personality(BaseModel):
    """How an agent comes across."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tone: Short = "friendly"
    style: Short = "plain and clear"
    traits: BigFive = Field(default_factory=BigFive)
    formality: Level = 0.5
    verbosity: Level = 0.3
    humour: Level = 0.3
    empathy: Level = 0.6


class Example(BaseModel):
    """A sample exchange showing how the agent answers."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    user: Text
    agent: Text


def script_steps(entry: str) -> list[str]:
    """The steps of one script entry: the entry itself, or the items of a JSON array of
    steps (one turn: tool calls first, then the reply). An item may be a reply template, a
    tool call or a conditional reply, written as a JSON object or as a string holding one."""
    if entry.lstrip().startswith("["):
        try:
            value = json.loads(entry)
        except ValueError:
            return [entry]
        if isinstance(value, list) and value and \
                all(isinstance(v, (str, dict)) for v in value):
            return [v if isinstance(v, str) else json.dumps(v) for v in value]
    return [entry]


def _is_tool_call(step: str) -> bool:
    """A scripted step that is a JSON object (a tool call), not a reply template."""
    if not step.lstrip().startswith("{"):
        return False
    try:
        return isinstance(json.loads(step), dict)
    except ValueError:
        return False


class _AnyField(dict[str, Any]):
    """Fills any template field with text, to check a scripted reply's template early."""

    def __missing__(self, key: str) -> str:
        return ""


class AgentDefinition(BaseModel):
    """What an agent is: its name, character, model, tools and manners in a room."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    template: str | None = None
    role: Text = "a helpful participant in a group chat"
    goal: Text = ""
    constraints: list[Short] = Field(default_factory=list, max_length=20)
    persona: Text = ""
    personality: Personality = Field(default_factory=Personality)
    interests: list[Short] = Field(default_factory=list, max_length=50)
    expertise: list[Short] = Field(default_factory=list, max_length=50)
    examples: list[Example] = Field(default_factory=list, max_length=10)
    provider: str = "scripted"
    model: str = "scripted-echo"
    # Backups tried in order when the primary fails, each "provider:model".
    fallbacks: list[Annotated[str, StringConstraints(max_length=200)]] = Field(
        default_factory=list, max_length=5)
    # For OpenAI-compatible endpoints and self-hosted servers.
    base_url: Annotated[str, StringConstraints(max_length=500)] | None = None
    # A secret reference: the name of the environment variable holding the key, never the key.
    api_key_env: Annotated[str, StringConstraints(pattern=r"^[A-Z][A-Z0-9_]{0,63}$")] | None = None
    # Tools the agent may call (an allow list) and the permissions it is granted.
    tools: list[Short] = Field(default_factory=list, max_length=50)
    permissions: list[Short] = Field(default_factory=list, max_length=20)
    max_tool_rounds: int = Field(default=4, ge=0, le=20)
    # Hosts ``http_get`` may fetch from, and the knowledge-base collection it searches.
    allowed_hosts: list[Short] = Field(default_factory=list, max_length=50)
    knowledge: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")] \
        | None = None
    opening_line: Text | None = None
    # Whether people other than the owner may add this agent to their rooms.
    joinable: bool = False
    # Privileged tools (e.g. run_python) anyone in a room may make this agent call there,
    # by room name; elsewhere only those who hold the permission themselves may.
    tools_for_everyone: dict[Annotated[str, StringConstraints(max_length=64)],
                             list[Short]] = Field(default_factory=dict, max_length=50)
    # Replies of the scripted provider, used in turn; {author}, {text} and {agent} are filled in.
    script: list[Text] = Field(default_factory=list, max_length=100)
    context_messages: int = Field(default=20, ge=1, le=500)
    # Context strategy and long-term memory: recall, weights, importance, reflection, facts.
    memory: MemoryConfig = Field(default_factory=MemoryConfig)
    # Manners: 0 never speaks unaddressed, 1 speaks whenever a message touches its interests.
    chattiness: Level = 0.0
    # Seconds after its own last message before it speaks unaddressed again.
    cooldown_seconds: float = Field(default=30.0, ge=0)
    # Speak first when the room has been quiet this long (None: never).
    idle_after_seconds: float | None = Field(default=None, gt=0)
    # Speak first on a schedule, every so many seconds (None: never).
    every_seconds: float | None = Field(default=None, gt=0)

    @field_validator("name")
    @classmethod
    def _valid_name(cls, name: str) -> str:
        try:
            return check_name(name, "agent")
        except Invalid as error:
            raise ValueError(error.message) from None

    @field_validator("script")
    @classmethod
    def _templates_format(cls, script: list[str]) -> list[str]:
        for number, entry in enumerate(script, start=1):
            for step in script_steps(entry):
                if _is_tool_call(step):
                    continue
                try:
                    step.format_map(_AnyField())
                except (ValueError, IndexError, KeyError, AttributeError) as error:
                    raise ValueError(f"script line {number} is not a valid reply template "
                                     f"({error}); write literal braces as {{{{ and }}}}") \
                        from None
        return script

    @field_validator("template")
    @classmethod
    def _known_template(cls, template: str | None) -> str | None:
        if template is not None and template not in TEMPLATES:
            raise ValueError(f"unknown template {template!r}; one of {', '.join(TEMPLATES)}")
        return template

    def system_prompt(self) -> str:
        """The system prompt this definition compiles to."""
        p = self.personality
        lines = [f"You are {self.name}, {self.role}."]
        if self.goal:
            lines.append(f"Your goal: {self.goal}")
        if self.persona:
            lines.append(self.persona)
        lines.append(f"Tone: {p.tone}. Style: {p.style}. "
                     f"{_scale(p.formality, 'casual', 'formal')}, "
                     f"{_scale(p.verbosity, 'brief', 'detailed')}, "
                     f"{_scale(p.humour, 'serious', 'playful')}, "
                     f"{_scale(p.empathy, 'matter-of-fact', 'warm')}.")
        t = p.traits
        lines.append("Personality (Big Five, 0-1): "
                     f"openness {t.openness:.1f}, conscientiousness {t.conscientiousness:.1f}, "
                     f"extraversion {t.extraversion:.1f}, agreeableness {t.agreeableness:.1f}, "
                     f"neuroticism {t.neuroticism:.1f}.")
        if self.interests:
            lines.append("Interests: " + ", ".join(self.interests) + ".")
        if self.expertise:
            lines.append("Expertise: " + ", ".join(self.expertise) + ".")
        if self.constraints:
            lines.append("Rules you always follow:")
            lines.extend(f"- {c}" for c in self.constraints)
        if self.tools:
            lines.append("Tools you may use: " + ", ".join(self.tools) + ".")
        for example in self.examples:
            lines.append(f"Example. Someone says: {example.user}\nYou answer: {example.agent}")
        lines.append("You are in a chat room with people and other agents. Messages show their "
                     "author. Answer what is addressed to you; stay quiet otherwise.")
        return "\n".join(lines)


def _scale(level: float, low: str, high: str) -> str:
    if level < 0.34:
        return low
    if level > 0.66:
        return high
    return f"between {low} and {high}"


TEMPLATES: dict[str, dict[str, Any]] = {
    "assistant": {
        "role": "a helpful assistant", "goal": "answer questions accurately and briefly",
        "constraints": ["say when you do not know"], "tools": ["calculator", "current_time"],
    },
    "rag_assistant": {
        "role": "an assistant that answers from the knowledge base",
        "goal": "answer from the documents you can search, citing them",
        "constraints": ["search the knowledge base before answering",
                        "cite the documents you used", "say when the documents do not say"],
        "tools": ["search_knowledge_base"],
    },
    "moderator": {
        "role": "the moderator of this room", "goal": "keep the conversation on topic and fair",
        "constraints": ["give everyone a turn", "summarise disagreements neutrally"],
        "personality": {"tone": "calm", "style": "structured", "formality": 0.7},
        "chattiness": 0.3, "tools": ["list_room_members"],
    },
    "debater": {
        "role": "a debater", "goal": "argue your side with evidence and answer objections",
        "constraints": ["stay civil", "address the strongest form of the other argument"],
        "personality": {"tone": "confident", "style": "argumentative", "humour": 0.2},
        "chattiness": 0.6,
    },
    "support_agent": {
        "role": "a customer support agent", "goal": "solve the customer's problem",
        "constraints": ["be patient", "never promise what you cannot do",
                        "escalate to a human when asked"],
        "personality": {"tone": "warm", "style": "step by step", "empathy": 0.9},
        "tools": ["search_knowledge_base", "current_time"],
    },
    "property_manager": {
        "role": "a property manager", "goal": "handle tenants' requests and maintenance",
        "constraints": ["log every maintenance request", "be clear about timelines"],
        "personality": {"tone": "professional", "style": "concise", "formality": 0.7},
        "tools": ["current_time", "send_direct_message"],
    },
}


def from_template(template: str, name: str, **overrides: Any) -> AgentDefinition:
    """A definition starting from ``template``, with ``overrides`` on top."""
    if template not in TEMPLATES:
        raise Invalid(f"unknown template {template!r}; one of {', '.join(TEMPLATES)}")
    return AgentDefinition.model_validate(
        {**TEMPLATES[template], "name": name, "template": template, **overrides})


def build(definition: dict[str, Any]) -> AgentDefinition:
    """Validate a definition, filling in its template's defaults first if it names one."""
    template = definition.get("template")
    if isinstance(template, str) and template in TEMPLATES:
        return AgentDefinition.model_validate({**TEMPLATES[template], **definition})
    return AgentDefinition.model_validate(definition)
