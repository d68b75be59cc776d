"""Just enough CloudFormation to evaluate template.yaml and infra/queue.yaml locally.

The local stack is provisioned from the deployable templates themselves, never from a
second list of resources, so this module reads them the way CloudFormation does:

* a YAML loader that turns the short tags (``!Ref``, ``!Sub``, ``!GetAtt``, ``!If`` ...)
  into their long forms (``{"Ref": ...}``, ``{"Fn::Sub": ...}``);
* parameter resolution (defaults, ``AllowedValues``, ``AllowedPattern``, ``MinValue`` /
  ``MaxValue``, ``CommaDelimitedList``), values kept as strings like CloudFormation does;
* an :class:`Evaluator` for the intrinsic functions the templates use (Ref, Fn::Sub,
  Fn::GetAtt, Fn::If, Fn::Equals, Fn::Not, Fn::And, Fn::Or, Fn::Join, Fn::Select,
  Fn::Split, Fn::FindInMap, Fn::Base64, Fn::GetAZs, Condition) with pseudo parameters and ``AWS::NoValue``;
* the dependency order of resources (Ref / GetAtt / Sub / DependsOn), so each resource
  is created after everything it references.

Nothing here talks to AWS; :mod:`infra.local.provision` does.
"""

from __future__ import annotations

import base64
import copy
import os
import re
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "NO_VALUE",
    "PSEUDO_PARAMETERS",
    "CfnLoader",
    "Evaluator",
    "TemplateError",
    "load_template",
    "resolve_parameters",
    "resource_dependencies",
    "sam_generated_ids",
    "topological_order",
]


class TemplateError(ValueError):
    """The template uses something this evaluator does not support, or is invalid."""


class _NoValue:
    """``AWS::NoValue``: removes the property (or list element) that evaluates to it."""

    _instance: _NoValue | None = None

    def __new__(cls) -> _NoValue:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "AWS::NoValue"


NO_VALUE = _NoValue()

PSEUDO_PARAMETERS = frozenset(
    {
        "AWS::AccountId",
        "AWS::NotificationARNs",
        "AWS::NoValue",
        "AWS::Partition",
        "AWS::Region",
        "AWS::StackId",
        "AWS::StackName",
        "AWS::URLSuffix",
    }
)


# ---- YAML with CloudFormation short tags -------------------------------------------------


class CfnLoader(yaml.SafeLoader):
    """A SafeLoader that reads ``!Tag value`` as CloudFormation's long form."""


def _construct_tag(loader: yaml.SafeLoader, tag_suffix: str, node: yaml.Node) -> dict[str, Any]:
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    elif isinstance(node, yaml.MappingNode):
        value = loader.construct_mapping(node, deep=True)
    else:  # pragma: no cover - yaml has no other node kinds
        raise TemplateError(f"unsupported node for !{tag_suffix}")
    if tag_suffix == "Ref":
        return {"Ref": value}
    if tag_suffix == "Condition":
        return {"Condition": value}
    if tag_suffix == "GetAtt" and isinstance(value, str):
        # "!GetAtt Resource.Attr" is the string form; only the first dot separates,
        # so nested-stack outputs ("App.Outputs.QueueUrl") keep their dots.
        logical, _, attr = value.partition(".")
        return {"Fn::GetAtt": [logical, attr]}
    return {f"Fn::{tag_suffix}": value}


CfnLoader.add_multi_constructor("!", _construct_tag)


_parsed: dict[tuple[str, int, int], Any] = {}


def load_template(path: str | Path) -> dict[str, Any]:
    """Parse a CloudFormation / SAM template (YAML or JSON) into plain data.

    Parsed once per file version and process (the pure-Python YAML parser takes ~0.1 s per
    template; every unit test provisions the stack); callers get their own copy.
    """
    stat = os.stat(path)
    key = (str(Path(path).resolve()), stat.st_mtime_ns, stat.st_size)
    if key not in _parsed:
        with open(path, encoding="utf-8") as fh:
            _parsed[key] = yaml.load(fh, Loader=CfnLoader)  # nosec B506 - CfnLoader is a SafeLoader that only adds the CloudFormation tags
    data = copy.deepcopy(_parsed[key])
    if not isinstance(data, dict) or "Resources" not in data:
        raise TemplateError(f"{path}: not a CloudFormation template (no Resources)")
    return data


# ---- parameters -----------------------------------------------------------------------------


def _scalar_to_string(value: Any) -> str:
    # CloudFormation passes every parameter value as a string; YAML gave us ints and bools.
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def resolve_parameters(template: Mapping[str, Any], given: Mapping[str, Any]) -> dict[str, Any]:
    """Apply defaults and validate, like CreateStack does.

    Values are strings, except ``CommaDelimitedList`` / ``List<...>`` parameters, which are
    lists of strings (that is what ``Ref`` returns for them).
    """
    declared: Mapping[str, Any] = template.get("Parameters") or {}
    unknown = set(given) - set(declared)
    if unknown:
        raise TemplateError(f"unknown parameters: {', '.join(sorted(unknown))}")
    resolved: dict[str, Any] = {}
    for name, spec in declared.items():
        spec = spec or {}
        if name in given:
            raw = given[name]
        elif "Default" in spec:
            raw = spec["Default"]
        else:
            raise TemplateError(f"parameter {name} has no value and no default")
        ptype = str(spec.get("Type", "String"))
        if ptype == "CommaDelimitedList" or ptype.startswith("List<"):
            items = raw if isinstance(raw, list) else _scalar_to_string(raw).split(",")
            resolved[name] = [_scalar_to_string(i).strip() for i in items]
            continue
        value = _scalar_to_string(raw)
        allowed = spec.get("AllowedValues")
        if allowed is not None and value not in [_scalar_to_string(a) for a in allowed]:
            raise TemplateError(f"parameter {name}={value!r} not in AllowedValues {allowed}")
        pattern = spec.get("AllowedPattern")
        if pattern is not None and re.fullmatch(str(pattern), value) is None:
            raise TemplateError(f"parameter {name}={value!r} does not match {pattern}")
        if ptype == "Number":
            try:
                number = float(value)
            except ValueError:
                raise TemplateError(f"parameter {name}={value!r} is not a number") from None
            if "MinValue" in spec and number < float(spec["MinValue"]):
                raise TemplateError(f"parameter {name}={value} is below MinValue {spec['MinValue']}")
            if "MaxValue" in spec and number > float(spec["MaxValue"]):
                raise TemplateError(f"parameter {name}={value} is above MaxValue {spec['MaxValue']}")
        resolved[name] = value
    return resolved


# ---- intrinsic functions --------------------------------------------------------------------

_SUB_VAR = re.compile(r"\$\{([^}]*)\}")


class Evaluator:
    """Evaluates intrinsic functions against one stack's parameters, conditions and resources.

    Resources are resolved through two callbacks so the caller decides what a resource's
    ``Ref`` and attributes are (the provisioner creates the resource first, then answers).
    """

    def __init__(
        self,
        *,
        parameters: Mapping[str, Any],
        pseudo: Mapping[str, Any],
        conditions: Mapping[str, Any] | None,
        mappings: Mapping[str, Any] | None = None,
        resolve_ref: Callable[[str], Any],
        resolve_getatt: Callable[[str, str], Any],
    ) -> None:
        self._parameters = parameters
        self._pseudo = dict(pseudo)
        self._pseudo["AWS::NoValue"] = NO_VALUE
        self._raw_conditions = dict(conditions or {})
        self._mappings = dict(mappings or {})
        self._conditions: dict[str, bool] = {}
        self._resolve_ref = resolve_ref
        self._resolve_getatt = resolve_getatt

    # -- public --

    def evaluate(self, node: Any) -> Any:
        """Evaluate ``node``; ``AWS::NoValue`` removes keys and list items (top level returns NO_VALUE)."""
        if isinstance(node, dict):
            if len(node) == 1:
                ((key, arg),) = node.items()
                if key == "Ref":
                    return self._ref(arg)
                if key == "Condition" and isinstance(arg, str):
                    return self.condition(arg)
                if key.startswith("Fn::"):
                    return self._function(key, arg)
            out: dict[str, Any] = {}
            for key, value in node.items():
                evaluated = self.evaluate(value)
                if evaluated is not NO_VALUE:
                    out[key] = evaluated
            return out
        if isinstance(node, list):
            return [v for v in (self.evaluate(item) for item in node) if v is not NO_VALUE]
        return node

    def condition(self, name: str) -> bool:
        if name not in self._conditions:
            if name not in self._raw_conditions:
                raise TemplateError(f"unknown condition {name}")
            self._conditions[name] = self._truthy(self._raw_conditions[name])
        return self._conditions[name]

    # -- internals --

    def _ref(self, name: Any) -> Any:
        if not isinstance(name, str):
            raise TemplateError(f"Ref takes a name, got {name!r}")
        if name in self._parameters:
            return self._parameters[name]
        if name in self._pseudo:
            return self._pseudo[name]
        if name.startswith("AWS::"):
            raise TemplateError(f"unsupported pseudo parameter {name}")
        return self._resolve_ref(name)

    def _function(self, name: str, arg: Any) -> Any:
        if name == "Fn::Sub":
            return self._sub(arg)
        if name == "Fn::GetAtt":
            if isinstance(arg, str):
                logical, _, attr = arg.partition(".")
            elif isinstance(arg, list) and len(arg) == 2:
                logical, attr = arg[0], self.evaluate(arg[1])
            else:
                raise TemplateError(f"bad Fn::GetAtt {arg!r}")
            return self._resolve_getatt(str(logical), str(attr))
        if name == "Fn::If":
            cond, if_true, if_false = _expect_list(name, arg, 3)
            return self.evaluate(if_true if self.condition(str(cond)) else if_false)
        if name == "Fn::Equals":
            left, right = _expect_list(name, arg, 2)
            return _scalar_to_string(self.evaluate(left)) == _scalar_to_string(self.evaluate(right))
        if name == "Fn::Not":
            (inner,) = _expect_list(name, arg, 1)
            return not self._truthy(inner)
        if name == "Fn::And":
            return all(self._truthy(c) for c in _expect_list(name, arg))
        if name == "Fn::Or":
            return any(self._truthy(c) for c in _expect_list(name, arg))
        if name == "Fn::Join":
            sep, items = _expect_list(name, arg, 2)
            values = self.evaluate(items)
            return str(sep).join(_scalar_to_string(v) for v in values)
        if name == "Fn::Select":
            index, items = _expect_list(name, arg, 2)
            return self.evaluate(items)[int(self.evaluate(index))]
        if name == "Fn::Split":
            sep, source = _expect_list(name, arg, 2)
            return str(self.evaluate(source)).split(str(sep))
        if name == "Fn::FindInMap":
            map_name, top, second = (self.evaluate(a) for a in _expect_list(name, arg, 3))
            try:
                return self._mappings[map_name][top][second]
            except KeyError:
                raise TemplateError(f"Fn::FindInMap: no {map_name}/{top}/{second}") from None
        if name == "Fn::Base64":
            return base64.b64encode(str(self.evaluate(arg)).encode()).decode()
        if name == "Fn::GetAZs":
            region = self.evaluate(arg) or self._pseudo.get("AWS::Region", "us-east-1")
            return [f"{region}{zone}" for zone in "abc"]
        raise TemplateError(f"unsupported intrinsic function {name}")

    def _truthy(self, node: Any) -> bool:
        value = self.evaluate(node)
        if isinstance(value, str):
            return value.lower() == "true"
        return bool(value)

    def _sub(self, arg: Any) -> str:
        if isinstance(arg, list):
            template, variables = _expect_list("Fn::Sub", arg, 2)
            local = {k: self.evaluate(v) for k, v in (variables or {}).items()}
        else:
            template, local = arg, {}
        if not isinstance(template, str):
            raise TemplateError(f"Fn::Sub takes a string, got {template!r}")

        def replace(match: re.Match[str]) -> str:
            expr = match.group(1)
            if expr.startswith("!"):
                return "${" + expr[1:] + "}"  # "${!Literal}" is an escaped literal
            if expr in local:
                value = local[expr]
            elif "." in expr and expr.split(".", 1)[0] not in self._parameters and not expr.startswith("AWS::"):
                logical, attr = expr.split(".", 1)
                value = self._resolve_getatt(logical, attr)
            else:
                value = self._ref(expr)
            if isinstance(value, list | dict) or value is NO_VALUE:
                raise TemplateError(f"Fn::Sub variable {expr} is not a scalar")
            return _scalar_to_string(value)

        return _SUB_VAR.sub(replace, template)


def _expect_list(name: str, arg: Any, length: int | None = None) -> list[Any]:
    if not isinstance(arg, list) or (length is not None and len(arg) != length):
        raise TemplateError(f"{name} takes a list of {length or 'some'} items, got {arg!r}")
    return arg


# ---- dependencies ---------------------------------------------------------------------------


def sam_generated_ids(resources: Mapping[str, Any]) -> dict[str, str]:
    """Logical IDs SAM generates (``<Function><Event>``, ``<Function>Role``) -> their owner.

    queue.yaml publishes ``${ConsumerFunctionJobs}``, the event source mapping SAM creates
    for the ``Jobs`` event of ``ConsumerFunction``; references to it depend on the function.
    """
    generated: dict[str, str] = {}
    for logical, resource in resources.items():
        if (resource or {}).get("Type") != "AWS::Serverless::Function":
            continue
        generated[f"{logical}Role"] = logical
        for event_name in (resource.get("Properties") or {}).get("Events") or {}:
            generated[f"{logical}{event_name}"] = logical
    return generated


def _references(node: Any) -> Iterable[str]:
    """Every logical name referenced by Ref / Fn::GetAtt / Fn::Sub inside ``node``."""
    if isinstance(node, dict):
        if len(node) == 1:
            ((key, arg),) = node.items()
            if key == "Ref" and isinstance(arg, str):
                yield arg
                return
            if key == "Fn::GetAtt":
                yield (arg.split(".", 1)[0] if isinstance(arg, str) else str(arg[0]))
                return
            if key == "Fn::Sub":
                template, variables = arg if isinstance(arg, list) else [arg, {}]
                for expr in _SUB_VAR.findall(str(template)):
                    if not expr.startswith("!") and expr not in (variables or {}):
                        yield expr.split(".", 1)[0]
                yield from _references(variables)
                return
        for value in node.values():
            yield from _references(value)
    elif isinstance(node, list):
        for item in node:
            yield from _references(item)


def resource_dependencies(template: Mapping[str, Any]) -> dict[str, set[str]]:
    """Logical ID -> the logical IDs of the resources it needs first."""
    resources: Mapping[str, Any] = template.get("Resources") or {}
    generated = sam_generated_ids(resources)
    sam_function_globals = ((template.get("Globals") or {}).get("Function")) or {}
    deps: dict[str, set[str]] = {}
    for logical, resource in resources.items():
        resource = resource or {}
        body: list[Any] = [resource.get("Properties") or {}]
        if resource.get("Type") == "AWS::Serverless::Function":
            body.append(sam_function_globals)  # SAM merges Globals into every function
        needed: set[str] = set()
        for name in _references(body):
            owner = generated.get(name, name)
            if owner in resources and owner != logical:
                needed.add(owner)
        depends_on = resource.get("DependsOn") or []
        needed.update([depends_on] if isinstance(depends_on, str) else depends_on)
        deps[logical] = needed
    return deps


def topological_order(deps: Mapping[str, set[str]]) -> list[str]:
    """Creation order; ties broken by template order so runs are reproducible."""
    order: list[str] = []
    state: dict[str, int] = {}  # 1 = visiting, 2 = done
    position = {name: i for i, name in enumerate(deps)}

    def visit(node: str, path: list[str]) -> None:
        if state.get(node) == 2:
            return
        if state.get(node) == 1:
            raise TemplateError("circular dependency: " + " -> ".join([*path, node]))
        state[node] = 1
        unknown = [d for d in deps.get(node, ()) if d not in deps]
        if unknown:
            raise TemplateError(f"{node} depends on unknown resource(s) {', '.join(sorted(unknown))}")
        for dep in sorted(deps.get(node, ()), key=position.__getitem__):
            visit(dep, [*path, node])
        state[node] = 2
        order.append(node)

    for node in deps:
        visit(node, [])
    return order
