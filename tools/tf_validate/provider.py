#!/usr/bin/env python3
"""A stand-in Terraform provider that serves a schema and nothing else.

    provider.py SCHEMA.json        (started by Terraform core, never by hand)

SCHEMA.json is in the format of `terraform providers schema -json` (cdk_schema.py writes one for
hashicorp/google from the CDK bindings). The plugin protocol (go-plugin handshake, TLS, gRPC,
tfplugin6) comes from the PyPI package `tf`; this module only answers what `terraform validate`
asks: the schema, and configuration validation, which it leaves entirely to Terraform core's own
schema checks. Every call that would plan, apply, read or import answers UNIMPLEMENTED, so the
stand-in can never be mistaken for the real provider.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

NESTING = {"single": "SINGLE", "list": "LIST", "set": "SET", "map": "MAP", "group": "GROUP"}


def block_pb(pb, block: dict):
    attributes = [
        pb.Schema.Attribute(
            name=name,
            type=json.dumps(spec["type"], separators=(",", ":")).encode(),
            required=spec.get("required", False),
            optional=spec.get("optional", False),
            computed=spec.get("computed", False),
            sensitive=spec.get("sensitive", False),
            deprecated=spec.get("deprecated", False),
        )
        for name, spec in sorted(block.get("attributes", {}).items())
    ]
    block_types = [
        pb.Schema.NestedBlock(
            type_name=name,
            block=block_pb(pb, spec.get("block", {})),
            nesting=pb.Schema.NestedBlock.NestingMode.Value(NESTING[spec["nesting_mode"]]),
            min_items=spec.get("min_items", 0),
            max_items=spec.get("max_items", 0),
        )
        for name, spec in sorted(block.get("block_types", {}).items())
    ]
    return pb.Schema.Block(attributes=attributes, block_types=block_types)


def schema_pb(pb, schema: dict):
    return pb.Schema(version=schema.get("version", 0), block=block_pb(pb, schema.get("block", {})))


def schema_response(pb, path: Path):
    document = json.loads(path.read_text())
    (address, provider), = document["provider_schemas"].items()
    return address, pb.GetProviderSchema.Response(
        provider=schema_pb(pb, provider["provider"]),
        provider_meta=pb.Schema(block=pb.Schema.Block()),
        resource_schemas={name: schema_pb(pb, s) for name, s in provider.get("resource_schemas", {}).items()},
        data_source_schemas={name: schema_pb(pb, s) for name, s in provider.get("data_source_schemas", {}).items()},
        server_capabilities=pb.ServerCapabilities(plan_destroy=True, get_provider_schema_optional=True),
    )


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    import tf.provider
    from tf.gen import tfplugin_pb2 as pb
    from tf.gen import tfplugin_pb2_grpc as rpc
    from tf.runner import run_provider

    address, response = schema_response(pb, Path(argv[0]))

    class SchemaOnly(rpc.ProviderServicer):
        """Only what validation needs; the generated base class answers UNIMPLEMENTED to the rest."""

        def __init__(self, _provider) -> None:
            pass

        def GetMetadata(self, request, context):
            return pb.GetMetadata.Response(
                server_capabilities=response.server_capabilities,
                resources=[pb.GetMetadata.ResourceMetadata(type_name=n) for n in response.resource_schemas],
                data_sources=[pb.GetMetadata.DataSourceMetadata(type_name=n) for n in response.data_source_schemas],
            )

        def GetProviderSchema(self, request, context):
            return response

        def GetFunctions(self, request, context):
            return pb.GetFunctions.Response()

        def ValidateProviderConfig(self, request, context):
            return pb.ValidateProviderConfig.Response()

        def ValidateResourceConfig(self, request, context):
            return pb.ValidateResourceConfig.Response()

        def ValidateDataResourceConfig(self, request, context):
            return pb.ValidateDataResourceConfig.Response()

        def StopProvider(self, request, context):
            return pb.StopProvider.Response()

    class Identity:
        """What tf.runner asks of a provider object."""

        @staticmethod
        def full_name() -> str:
            return address

    # tf.runner builds its servicer from this name at call time.
    tf.provider.ProviderServicer = SchemaOnly
    run_provider(Identity(), ["provider"])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
