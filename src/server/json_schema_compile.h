// response_format {"type": "json_schema", "json_schema": {"schema": ...}} (and tools'
// parameters): the request's JSON Schema compiled into the engine's JsonSchema
// (engine/json_schema.h). Only what the engine can enforce is accepted: "type" (object, array,
// string, number, integer, boolean, null, or a list of them), "properties", "required" (every
// property is written anyway), "additionalProperties", "items", "minItems", "maxItems",
// "minLength" and "maxLength" (characters: code points), "format" date, time, date-time, uuid
// (engine/string_format.h; other formats are refused), "minimum", "maximum",
// "exclusiveMinimum", "exclusiveMaximum" (on integers: inclusive 64-bit bounds, a fraction
// rounded inwards; on numbers: in units of 10^-18, rounded inwards; within +-9.2e18), "enum" and
// "const" (scalar values), "anyOf" and "oneOf" whose alternatives begin with different bytes
// (different JSON types: Optional[X] is X or null), "$ref" to a schema in the same document
// ("#", "#/$defs/Name", "#/definitions/Name", any JSON pointer; schemas may refer to themselves),
// "$defs" / "definitions", and the annotations title, description, default, examples, $schema,
// $id, $comment. Any other keyword ("pattern", "allOf", "multipleOf", ...) is refused, naming the
// keyword and where it is, rather than ignored; so are alternatives that could begin alike (two
// objects, number and integer) and a schema no document can complete within the nesting limit.
// "properties" with false leaves the property out; enum values that are not of the schema's type
// (or not equal to its const) are dropped. The root must be an object. Limits: nesting 16 (of
// the schema as written, through each $ref once), 1024 schema nodes, 64 enum values, 16
// alternatives, property names and enum values of 4 KiB, minItems 1024, minLength 4096.
#pragma once

#include <memory>
#include <nlohmann/json.hpp>

#include "engine/json_schema.h"
#include "util/status.h"

namespace carpool::server {

// ordered_json: properties are written in the order the schema declares them.
Result<std::shared_ptr<const JsonSchema>> compile_json_schema(const nlohmann::ordered_json& schema);

}  // namespace carpool::server
