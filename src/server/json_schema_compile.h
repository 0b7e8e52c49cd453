// response_format {"type": "json_schema", "json_schema": {"schema": ...}}: the request's JSON
// Schema compiled into the engine's JsonSchema (engine/json_schema.h). Only what the engine can
// enforce is accepted: "type" (one of object, array, string, number, integer, boolean, null),
// "properties", "required" (every property is written anyway), "additionalProperties", "items",
// "minItems", "maxItems", "enum" and "const" (scalar values), and the annotations title,
// description, default, examples, $schema, $id, $comment. Any other keyword ("pattern",
// "anyOf", "$ref", "minimum", ...) is refused, naming the keyword and where it is, rather than
// ignored. "properties" with false leaves the property out; enum values that are not of the
// schema's type (or not equal to its const) are dropped. The root must be an object. Limits:
// nesting 16, 1024 schema nodes, 64 enum values, property names and enum values of 4 KiB,
// minItems 1024.
#pragma once

#include <memory>
#include <nlohmann/json.hpp>

#include "engine/json_schema.h"
#include "util/status.h"

namespace carpool::server {

// ordered_json: properties are written in the order the schema declares them.
Result<std::shared_ptr<const JsonSchema>> compile_json_schema(const nlohmann::ordered_json& schema);

}  // namespace carpool::server
