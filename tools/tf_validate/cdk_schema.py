#!/usr/bin/env python3
"""Rebuild the hashicorp/google provider schema from the prebuilt CDK Terrain bindings.

`cdktn-provider-google` (PyPI) is generated from `terraform providers schema -json` of one exact
provider release (20.3.1 <- google 7.46.1, as its README says). Its wheel carries the npm package
as a jsii tarball, whose compiled JavaScript keeps, for every resource, data source and nested
block, what the generator read from that schema:

  * a marker before each member:   // <name> - computed: <bool>, optional: <bool>, required: <bool>
  * the member's kind in the code that follows it:
      return this.getStringAttribute('x')            string (Number, Boolean, List, StringMap...)
      return cdktn.Fn.tolist(this.getListAttribute(  a set of strings
      _x = new cdktn.StringMap(this, "x")            computed map
      _x = new FooOutputReference(this, "x")         nested object, at most one
      _x = new FooList(this, "x", <wrapsSet>)        nested objects, list or set
  * for every configurable object, `fooToHclTerraform` / `synthesizeHclAttributes` saying whether
    each member is written as a block (`isBlock`) and its collection type (list, set, struct).

This module turns that back into Terraform's own JSON schema format (the output of
`terraform providers schema -json`), which tools/tf_validate/provider.py serves to Terraform core.

What the bindings do not carry, and so this schema cannot check: max_items above 1, min_items of
optional blocks, and the provider's own validators (enums, regexes, ConflictsWith): those run in
the real provider at plan time. Everything Terraform core itself checks from a schema is here:
argument names, required arguments, blocks versus arguments, nesting, attribute types, and the
attributes an expression may read.

    python cdk_schema.py WHEEL_OR_TGZ OUT.json
"""

from __future__ import annotations

import io
import json
import re
import sys
import tarfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

PROVIDER_ADDRESS = "registry.terraform.io/hashicorp/google"

MARKER = re.compile(r"^ +// (\w+) - computed: (true|false), optional: (true|false), required: (true|false)\n", re.M)
CLASS = re.compile(r"^class (\w+) extends ([\w.]+) \{\n(.*?)^\}\n", re.M | re.S)
HCL_FUNCTION = re.compile(r"^function (\w+)ToHclTerraform\(struct\) \{\n(.*?)^\}\n", re.M | re.S)
HCL_METHOD = re.compile(r"^    synthesizeHclAttributes\(\) \{\n(.*?)^    \}\n", re.M | re.S)
HCL_ENTRY = re.compile(
    r"^ +(\w+): \{\n +value: .*\n +isBlock: (true|false),\n +type: \"(\w+)\",\n +storageClassType: \"(\w+)\",\n +\},?\n", re.M
)
TF_TYPE = re.compile(r'static tfResourceType = "(\w+)";')
VERSION = re.compile(r"prebuilt bindings for hashicorp/google provider version (\d+\.\d+\.\d+)")

NESTED = re.compile(r'_\w+ = new (?:\w+_\d+\.)?(\w+?)(OutputReference|List)\(this, "\w+"(?:, (true|false))?\);')
BUILTIN_COLLECTION = re.compile(r'_\w+ = new cdktn\.(\w+)\(this, "\w+"(?:, (?:true|false))?\);')
GETTER = re.compile(r"return (cdktn\.Fn\.tolist\()?this\.get(\w*)Attribute\('\w+'\)")

GETTER_TYPES = {
    "String": "string",
    "Number": "number",
    "Boolean": "bool",
    "List": ["list", "string"],
    "NumberList": ["list", "number"],
    "StringMap": ["map", "string"],
    "NumberMap": ["map", "number"],
    "BooleanMap": ["map", "bool"],
    "AnyMap": ["map", "dynamic"],
}
BUILTIN_TYPES = {
    "StringMap": ["map", "string"],
    "NumberMap": ["map", "number"],
    "BooleanMap": ["map", "bool"],
    "AnyMap": ["map", "dynamic"],
    "StringMapList": ["list", ["map", "string"]],
    "NumberMapList": ["list", ["map", "number"]],
    "BooleanMapList": ["list", ["map", "bool"]],
    "AnyMapList": ["list", ["map", "dynamic"]],
    "StringListList": ["list", ["list", "string"]],
    "NumberListList": ["list", ["list", "number"]],
}
# Configurable members' types from the HCL serialiser, where the getter does not say (the provider).
STORAGE_TYPES = {
    "string": "string",
    "number": "number",
    "boolean": "bool",
    "stringList": ["list", "string"],
    "numberList": ["list", "number"],
    "booleanList": ["list", "bool"],
    "stringMap": ["map", "string"],
    "numberMap": ["map", "number"],
    "booleanMap": ["map", "bool"],
    "anyMap": ["map", "dynamic"],
}


@dataclass
class Member:
    name: str
    computed: bool
    optional: bool
    required: bool
    type: object = None  # a cty type (JSON form) for plain attributes
    nested: str | None = None  # the OutputReference class of a nested object
    many: bool = False  # FooList (a list or set of objects) rather than FooOutputReference (at most one)
    wraps_set: bool = False


@dataclass
class Klass:
    name: str
    base: str
    members: list[Member] = field(default_factory=list)
    tf_type: str | None = None
    hcl: dict[str, tuple[bool, str, str]] = field(default_factory=dict)  # resource/provider classes


class Bindings:
    """Every class and HCL serialiser of the package's JavaScript."""

    def __init__(self) -> None:
        self.classes: dict[str, Klass] = {}
        self.hcl: dict[str, dict[str, tuple[bool, str, str]]] = {}  # struct name -> member -> (isBlock, type, storage)
        self.unknown: list[str] = []

    def add_source(self, text: str) -> None:
        for match in HCL_FUNCTION.finditer(text):
            struct = match[1][0].upper() + match[1][1:]
            self.hcl[struct] = hcl_entries(match[2])
        for match in CLASS.finditer(text):
            name, base, body = match[1], match[2], match[3]
            klass = Klass(name, base)
            tf_type = TF_TYPE.search(body)
            klass.tf_type = tf_type[1] if tf_type else None
            method = HCL_METHOD.search(body)
            if method:
                klass.hcl = hcl_entries(method[1])
            markers = list(MARKER.finditer(body))
            for i, marker in enumerate(markers):
                end = markers[i + 1].start() if i + 1 < len(markers) else len(body)
                klass.members.append(self._member(name, marker, body[marker.end():end]))
            if name in self.classes:
                raise ValueError(f"class {name} is defined twice")
            self.classes[name] = klass

    def _member(self, owner: str, marker: re.Match, segment: str) -> Member:
        member = Member(marker[1], marker[2] == "true", marker[3] == "true", marker[4] == "true")
        first_line = segment.lstrip().split("\n", 1)[0]
        nested = NESTED.match(first_line)
        if nested:
            member.nested = f"{nested[1]}OutputReference"
            member.many = nested[2] == "List"
            member.wraps_set = nested[3] == "true"
            return member
        builtin = BUILTIN_COLLECTION.match(first_line)
        if builtin:
            if builtin[1] not in BUILTIN_TYPES:
                self.unknown.append(f"{owner}.{member.name}: cdktn.{builtin[1]}")
            member.type = BUILTIN_TYPES.get(builtin[1], "dynamic")
            return member
        getter = GETTER.search(segment)
        if getter:
            kind = GETTER_TYPES.get(getter[2])
            if kind is None:
                self.unknown.append(f"{owner}.{member.name}: get{getter[2]}Attribute")
                kind = "dynamic"
            if getter[1]:  # cdktn.Fn.tolist(...): the schema says set, the binding indexes it as a list
                kind = ["set", kind[1]] if isinstance(kind, list) and kind[0] == "list" else kind
            member.type = kind
            return member
        member.type = None  # decided from the HCL serialiser (the provider's members) or dynamic
        return member


def hcl_entries(body: str) -> dict[str, tuple[bool, str, str]]:
    return {m[1]: (m[2] == "true", m[3], m[4]) for m in HCL_ENTRY.finditer(body)}


class SchemaBuilder:
    def __init__(self, bindings: Bindings) -> None:
        self.b = bindings

    def struct_of(self, reference_class: str) -> str:
        return reference_class.removesuffix("OutputReference")

    def object_type(self, klass_name: str, stack: tuple[str, ...] = ()) -> object:
        """The cty object type of a nested class, every member an attribute (computed-only objects)."""
        if klass_name in stack:
            return "dynamic"  # recursive schemas cannot be expressed as one type
        klass = self.b.classes[klass_name]
        attributes = {}
        for m in klass.members:
            if m.nested:
                inner = self.object_type(m.nested, stack + (klass_name,))
                attributes[m.name] = ["set" if m.wraps_set else "list", inner]
            else:
                attributes[m.name] = m.type if m.type is not None else "dynamic"
        return ["object", attributes]

    def block(self, klass: Klass, hcl: dict[str, tuple[bool, str, str]], stack: tuple[str, ...] = ()) -> dict:
        attributes: dict[str, dict] = {}
        block_types: dict[str, dict] = {}
        for m in klass.members:
            entry = hcl.get(m.name)
            computed_only = m.computed and not m.optional and not m.required
            if m.nested and entry and entry[0] and not computed_only:
                nested_klass = self.b.classes[m.nested]
                nested_hcl = self.b.hcl.get(self.struct_of(m.nested), {})
                if m.nested in stack:
                    raise ValueError(f"recursive block {m.nested}")
                spec = {"block": self.block(nested_klass, nested_hcl, stack + (m.nested,))}
                if entry[1] == "struct":
                    spec["nesting_mode"] = "single"
                elif m.wraps_set or entry[1] == "set":
                    spec["nesting_mode"] = "set"
                else:
                    spec["nesting_mode"] = "list"
                if spec["nesting_mode"] != "single":
                    if m.required:
                        spec["min_items"] = 1
                    if not m.many:
                        spec["max_items"] = 1
                block_types[m.name] = spec
                continue
            if not m.nested and m.type is None and entry and entry[0]:
                continue  # a provider block, written from plain struct fields: below
            if m.nested:
                inner = self.object_type(m.nested)
                if entry and entry[1] == "struct":
                    cty = inner
                else:
                    cty = ["set" if (m.wraps_set or (entry and entry[1] == "set")) else "list", inner]
            elif m.type is not None:
                cty = m.type
            elif entry and entry[2] in STORAGE_TYPES:
                cty = STORAGE_TYPES[entry[2]]
                if entry[1] == "set" and isinstance(cty, list):
                    cty = ["set", cty[1]]
            else:
                self.b.unknown.append(f"{klass.name}.{m.name}: no type")
                cty = "dynamic"
            attribute: dict = {"type": cty}
            if m.required:
                attribute["required"] = True
            else:
                if m.optional:
                    attribute["optional"] = True
                if m.computed:
                    attribute["computed"] = True
            if not (attribute.get("required") or attribute.get("optional") or attribute.get("computed")):
                attribute["optional"] = True
            attributes[m.name] = attribute
        # Blocks the provider class writes from plain struct fields (no OutputReference): the
        # provider configuration's own nested blocks.
        for name, (is_block, kind, storage) in hcl.items():
            if is_block and name not in block_types and name not in attributes:
                struct = storage.removesuffix("List")
                fields = self.b.hcl.get(struct, {})
                block_types[name] = {
                    "nesting_mode": "set" if kind == "set" else "list",
                    "block": {"attributes": {n: {"type": STORAGE_TYPES.get(s, "dynamic"), "optional": True} for n, (_, _, s) in fields.items()}},
                }
        result: dict = {}
        if attributes:
            result["attributes"] = attributes
        if block_types:
            result["block_types"] = block_types
        return result

    def build(self, version: str) -> dict:
        resources, data_sources, provider = {}, {}, None
        for klass in self.b.classes.values():
            if klass.base == "cdktn.TerraformResource":
                resources[klass.tf_type] = {"version": 0, "block": self.block(klass, klass.hcl)}
            elif klass.base == "cdktn.TerraformDataSource":
                data_sources[klass.tf_type] = {"version": 0, "block": self.block(klass, klass.hcl)}
            elif klass.base == "cdktn.TerraformProvider":
                provider = {"version": 0, "block": self.block(klass, klass.hcl)}
        if provider is None or not resources:
            raise ValueError("no provider or no resources found: not a cdktn provider package")
        return {
            "format_version": "1.0",
            "provider_schemas": {
                PROVIDER_ADDRESS: {
                    "provider": provider,
                    "resource_schemas": dict(sorted(resources.items())),
                    "data_source_schemas": dict(sorted(data_sources.items())),
                }
            },
            # Not part of Terraform's format: where this schema came from.
            "source": {"provider_version": version},
        }


def jsii_tarball(path: Path) -> bytes:
    """The npm package tarball inside the wheel (or the tarball itself)."""
    if path.suffix == ".whl":
        with zipfile.ZipFile(path) as wheel:
            names = [n for n in wheel.namelist() if n.endswith(".jsii.tgz")]
            if len(names) != 1:
                raise ValueError(f"{path} holds {len(names)} jsii tarballs")
            return wheel.read(names[0])
    return path.read_bytes()


def extract(path: Path) -> dict:
    bindings, version = Bindings(), None
    with tarfile.open(fileobj=io.BytesIO(jsii_tarball(path)), mode="r:gz") as tar:
        for member in tar:
            if not member.isfile():
                continue
            if member.name == "package/README.md":
                found = VERSION.search(tar.extractfile(member).read().decode())
                version = found[1] if found else None
            elif member.name.startswith("package/lib/") and member.name.endswith(".js"):
                bindings.add_source(tar.extractfile(member).read().decode())
    if version is None:
        raise ValueError(f"{path}: the README does not name the provider version")
    schema = SchemaBuilder(bindings).build(version)
    schema["source"]["unresolved_members"] = sorted(bindings.unknown)
    return schema


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__.strip().splitlines()[-1].strip(), file=sys.stderr)
        return 2
    schema = extract(Path(argv[0]))
    Path(argv[1]).write_text(json.dumps(schema, separators=(",", ":")))
    google = schema["provider_schemas"][PROVIDER_ADDRESS]
    print(
        f"google {schema['source']['provider_version']}: {len(google['resource_schemas'])} resources, "
        f"{len(google['data_source_schemas'])} data sources, {len(schema['source']['unresolved_members'])} members typed dynamic"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
