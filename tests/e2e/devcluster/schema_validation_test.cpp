// Custom resources against a CRD's structural schema: each validation keyword with the exact
// message kube-apiserver gives, pruning of unknown fields, defaulting, and the structural checks
// at CRD creation.
#include "e2e/devcluster/apiserver/schema_validation.h"

#include <gtest/gtest.h>

namespace hotswap::devcluster {
namespace {

using nlohmann::json;

const json& migration_schema() {
  static const json schema = json::parse(R"({
    "type": "object",
    "properties": {
      "spec": {
        "type": "object",
        "required": ["model"],
        "properties": {
          "model": {"type": "string", "minLength": 1, "maxLength": 10, "pattern": "^[a-z0-9-]+$"},
          "replicas": {"type": "integer", "minimum": 0, "maximum": 10, "default": 1},
          "mode": {"type": "string", "enum": ["KV", "Recompute", "Auto"], "default": "Auto"},
          "ratio": {"type": "number", "minimum": 0, "exclusiveMinimum": true, "maximum": 1, "exclusiveMaximum": true},
          "step": {"type": "integer", "multipleOf": 4},
          "items": {"type": "array", "minItems": 1, "maxItems": 2,
                    "items": {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}}}},
          "labels": {"type": "object", "additionalProperties": {"type": "string"}},
          "port": {"x-kubernetes-int-or-string": true},
          "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
          "template": {"type": "object", "x-kubernetes-embedded-resource": true,
                       "properties": {"spec": {"type": "object", "properties": {"image": {"type": "string"}}}}},
          "note": {"type": "string", "nullable": true},
          "enabled": {"type": "boolean"},
          "tags": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}},
          "ports": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"],
                    "items": {"type": "object",
                              "properties": {"name": {"type": "string"}, "port": {"type": "integer"}}}}
        }
      },
      "status": {"type": "object", "properties": {"phase": {"type": "string"}}}
    }
  })");
  return schema;
}

json with_spec(const char* spec) {
  json obj = {{"apiVersion", "hotswap.dev/v1"}, {"kind", "Migration"}, {"metadata", {{"name", "m"}}}};
  obj["spec"] = json::parse(spec);
  return obj;
}

void expect_error(const char* spec, const char* field, const char* type, const char* message) {
  const std::vector<FieldError> errors = validate_against_schema(with_spec(spec), migration_schema());
  ASSERT_EQ(errors.size(), 1u) << spec;
  EXPECT_EQ(errors[0].field, field) << spec;
  EXPECT_EQ(errors[0].type, type) << spec;
  EXPECT_EQ(errors[0].message, message) << spec;
}

TEST(SchemaValidation, AValidObjectHasNoErrors) {
  const json obj = with_spec(R"({"model":"llama-3","replicas":2,"mode":"KV","ratio":0.5,"step":8,
      "items":[{"name":"a"}],"labels":{"x":"y"},"port":"http","extra":{"anything":[1,{"a":2}]},
      "template":{"apiVersion":"v1","kind":"Pod","metadata":{"name":"t"},"spec":{"image":"x"}},
      "note":null,"enabled":true,"tags":["a","b"],"ports":[{"name":"a","port":1},{"name":"b","port":1}]})");
  EXPECT_TRUE(validate_against_schema(obj, migration_schema()).empty());
  EXPECT_TRUE(
      validate_against_schema(with_spec(R"({"model":"m","port":8080,"replicas":2.0})"), migration_schema()).empty());
}

TEST(SchemaValidation, TypeMismatchReadsLikeKubeApiserver) {
  expect_error(R"({"model":"m","replicas":"3"})", "spec.replicas", "FieldValueTypeInvalid",
               "spec.replicas: Invalid value: \"string\": spec.replicas in body must be of type integer: \"string\"");
  expect_error(R"({"model":"m","replicas":1.5})", "spec.replicas", "FieldValueTypeInvalid",
               "spec.replicas: Invalid value: \"number\": spec.replicas in body must be of type integer: \"number\"");
  expect_error(R"({"model":"m","enabled":"yes"})", "spec.enabled", "FieldValueTypeInvalid",
               "spec.enabled: Invalid value: \"string\": spec.enabled in body must be of type boolean: \"string\"");
  expect_error(R"({"model":"m","items":{}})", "spec.items", "FieldValueTypeInvalid",
               "spec.items: Invalid value: \"object\": spec.items in body must be of type array: \"object\"");
  expect_error(R"({"model":["m"]})", "spec.model", "FieldValueTypeInvalid",
               "spec.model: Invalid value: \"array\": spec.model in body must be of type string: \"array\"");
  const auto errors = validate_against_schema(with_spec("\"x\""), migration_schema());
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(errors[0].message, "spec: Invalid value: \"string\": spec in body must be of type object: \"string\"");
}

TEST(SchemaValidation, NumberAcceptsIntegers) {
  EXPECT_TRUE(validate_against_schema(with_spec(R"({"model":"m","ratio":0.25})"), migration_schema()).empty());
  expect_error(R"({"model":"m","ratio":1})", "spec.ratio", "FieldValueInvalid",
               "spec.ratio: Invalid value: 1: spec.ratio in body should be less than 1");
}

TEST(SchemaValidation, NullIsATypeErrorUnlessNullable) {
  expect_error(R"({"model":"m","enabled":null})", "spec.enabled", "FieldValueTypeInvalid",
               "spec.enabled: Invalid value: \"null\": spec.enabled in body must be of type boolean: \"null\"");
  EXPECT_TRUE(validate_against_schema(with_spec(R"({"model":"m","note":null})"), migration_schema()).empty());
}

TEST(SchemaValidation, RequiredField) {
  expect_error(R"({"replicas":1})", "spec.model", "FieldValueRequired", "spec.model: Required value");
  expect_error(R"({"model":"m","items":[{"name":"a"},{}]})", "spec.items[1].name", "FieldValueRequired",
               "spec.items[1].name: Required value");
}

TEST(SchemaValidation, EnumListsTheSupportedValues) {
  expect_error(R"({"model":"m","mode":"X"})", "spec.mode", "FieldValueNotSupported",
               "spec.mode: Unsupported value: \"X\": supported values: \"KV\", \"Recompute\", \"Auto\"");
  const json schema = json::parse(R"({"type":"object","properties":{"level":{"type":"integer","enum":[1,2]}}})");
  const auto errors = validate_against_schema(json::parse(R"({"level":3})"), schema);
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(errors[0].message, "level: Unsupported value: 3: supported values: \"1\", \"2\"");
}

TEST(SchemaValidation, MinimumAndMaximum) {
  expect_error(R"({"model":"m","replicas":-1})", "spec.replicas", "FieldValueInvalid",
               "spec.replicas: Invalid value: -1: spec.replicas in body should be greater than or equal to 0");
  expect_error(R"({"model":"m","replicas":11})", "spec.replicas", "FieldValueInvalid",
               "spec.replicas: Invalid value: 11: spec.replicas in body should be less than or equal to 10");
  expect_error(R"({"model":"m","ratio":0})", "spec.ratio", "FieldValueInvalid",
               "spec.ratio: Invalid value: 0: spec.ratio in body should be greater than 0");
  expect_error(R"({"model":"m","ratio":1.5})", "spec.ratio", "FieldValueInvalid",
               "spec.ratio: Invalid value: 1.5: spec.ratio in body should be less than 1");
}

TEST(SchemaValidation, BoundsPrintAsGoFormatsFloats) {
  const json schema = json::parse(R"({"type":"object","properties":{
      "big":{"type":"number","minimum":1000000},"small":{"type":"number","maximum":0.00001},
      "mid":{"type":"number","minimum":123456}}})");
  const auto errors = validate_against_schema(json::parse(R"({"big":5,"small":0.5,"mid":2.5e-7})"), schema);
  ASSERT_EQ(errors.size(), 3u);
  EXPECT_EQ(errors[0].message, "big: Invalid value: 5: big in body should be greater than or equal to 1e+06");
  EXPECT_EQ(errors[1].message, "mid: Invalid value: 2.5e-07: mid in body should be greater than or equal to 123456");
  EXPECT_EQ(errors[2].message, "small: Invalid value: 0.5: small in body should be less than or equal to 1e-05");
}

TEST(SchemaValidation, MultipleOf) {
  expect_error(R"({"model":"m","step":6})", "spec.step", "FieldValueInvalid",
               "spec.step: Invalid value: 6: spec.step in body should be a multiple of 4");
}

TEST(SchemaValidation, StringLengthAndPattern) {
  const auto empty = validate_against_schema(with_spec(R"({"model":""})"), migration_schema());
  ASSERT_EQ(empty.size(), 2u);
  EXPECT_EQ(empty[0].message, "spec.model: Invalid value: \"\": spec.model in body should be at least 1 chars long");
  EXPECT_EQ(empty[1].message, "spec.model: Invalid value: \"\": spec.model in body should match '^[a-z0-9-]+$'");
  expect_error(R"({"model":"abcdefghijk"})", "spec.model", "FieldValueTooLong",
               "spec.model: Too long: may not be longer than 10");
  expect_error(R"({"model":"Llama"})", "spec.model", "FieldValueInvalid",
               "spec.model: Invalid value: \"Llama\": spec.model in body should match '^[a-z0-9-]+$'");
  // Lengths count characters, not bytes.
  const json schema = json::parse(R"({"type":"object","properties":{"s":{"type":"string","maxLength":2}}})");
  EXPECT_TRUE(validate_against_schema(json::parse(R"({"s":"\u00e9\u00e9"})"), schema).empty());
}

TEST(SchemaValidation, PatternIsUnanchored) {
  const json schema = json::parse(R"({"type":"object","properties":{"s":{"type":"string","pattern":"[0-9]"}}})");
  EXPECT_TRUE(validate_against_schema(json::parse(R"({"s":"abc1"})"), schema).empty());
  EXPECT_EQ(validate_against_schema(json::parse(R"({"s":"abc"})"), schema).size(), 1u);
}

TEST(SchemaValidation, ItemCounts) {
  expect_error(R"({"model":"m","items":[]})", "spec.items", "FieldValueInvalid",
               "spec.items: Invalid value: 0: spec.items in body should have at least 1 items");
  expect_error(R"({"model":"m","items":[{"name":"a"},{"name":"b"},{"name":"c"}]})", "spec.items", "FieldValueTooMany",
               "spec.items: Too many: 3: must have at most 2 items");
}

TEST(SchemaValidation, ItemsAreValidatedWithTheirIndex) {
  expect_error(R"({"model":"m","items":[{"name":5}]})", "spec.items[0].name", "FieldValueTypeInvalid",
               "spec.items[0].name: Invalid value: \"integer\": spec.items[0].name in body must be of type string: "
               "\"integer\"");
}

TEST(SchemaValidation, ListTypeSetAndMapRefuseDuplicates) {
  expect_error(R"({"model":"m","tags":["a","b","a"]})", "spec.tags[2]", "FieldValueDuplicate",
               "spec.tags[2]: Duplicate value: \"a\"");
  expect_error(R"({"model":"m","ports":[{"name":"http","port":1},{"name":"http","port":2}]})", "spec.ports[1]",
               "FieldValueDuplicate", "spec.ports[1]: Duplicate value: map[string]interface {}{\"name\":\"http\"}");
}

TEST(SchemaValidation, AdditionalPropertiesValidateMapValues) {
  expect_error(R"({"model":"m","labels":{"a":"x","b":1}})", "spec.labels.b", "FieldValueTypeInvalid",
               "spec.labels.b: Invalid value: \"integer\": spec.labels.b in body must be of type string: \"integer\"");
  const auto errors = validate_against_schema(json::parse(R"({"spec":{}})"), json::parse(R"({"type":"object",
      "properties":{"spec":{"type":"object","additionalProperties":false}}})"));
  EXPECT_TRUE(errors.empty());
  const auto forbidden = validate_against_schema(json::parse(R"({"spec":{"x":1}})"), json::parse(R"({"type":"object",
      "properties":{"spec":{"type":"object","additionalProperties":false}}})"));
  ASSERT_EQ(forbidden.size(), 1u);
  EXPECT_EQ(forbidden[0].message, "spec: Invalid value: \"x\": spec.x in body is a forbidden property");
}

TEST(SchemaValidation, PropertyCounts) {
  const json schema = json::parse(R"({"type":"object","properties":{"m":{"type":"object","minProperties":1,
      "maxProperties":2,"additionalProperties":{"type":"integer"}}}})");
  auto few = validate_against_schema(json::parse(R"({"m":{}})"), schema);
  ASSERT_EQ(few.size(), 1u);
  EXPECT_EQ(few[0].message, "m: Invalid value: 0: m in body should have at least 1 properties");
  auto many = validate_against_schema(json::parse(R"({"m":{"a":1,"b":2,"c":3}})"), schema);
  ASSERT_EQ(many.size(), 1u);
  EXPECT_EQ(many[0].message, "m: Too many: 3: must have at most 2 items");
}

TEST(SchemaValidation, IntOrStringTakesEither) {
  expect_error(R"({"model":"m","port":true})", "spec.port", "FieldValueTypeInvalid",
               "spec.port: Invalid value: \"boolean\": spec.port in body must be of type integer,string: \"boolean\"");
  expect_error(R"({"model":"m","port":1.5})", "spec.port", "FieldValueTypeInvalid",
               "spec.port: Invalid value: \"number\": spec.port in body must be of type integer,string: \"number\"");
}

TEST(SchemaValidation, RootApiVersionKindAndMetadataAreNotTheSchemasBusiness) {
  json obj = with_spec(R"({"model":"m"})");
  obj["kind"] = 7;
  obj["metadata"] = {{"name", "m"}, {"labels", {{"a", "b"}}}};
  EXPECT_TRUE(validate_against_schema(obj, migration_schema()).empty());
  // ... unless the schema lists them.
  json schema = migration_schema();
  schema["properties"]["kind"] = {{"type", "string"}};
  const auto errors = validate_against_schema(obj, schema);
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(errors[0].field, "kind");
  // An embedded resource's are skipped the same way.
  EXPECT_TRUE(
      validate_against_schema(with_spec(R"({"model":"m","template":{"kind":1,"metadata":"x"}})"), migration_schema())
          .empty());
}

TEST(SchemaValidation, SeveralErrorsAreAllReported) {
  const auto errors =
      validate_against_schema(with_spec(R"({"replicas":-1,"mode":"X","items":[{}]})"), migration_schema());
  ASSERT_EQ(errors.size(), 4u);
  EXPECT_EQ(errors[0].field, "spec.model");
  EXPECT_EQ(errors[1].field, "spec.items[0].name");
  EXPECT_EQ(errors[2].field, "spec.mode");
  EXPECT_EQ(errors[3].field, "spec.replicas");
}

TEST(SchemaValidation, StringValuesAreQuotedLikeGo) {
  const json schema = json::parse(R"({"type":"object","properties":{"s":{"type":"string","enum":["a"]}}})");
  const auto errors = validate_against_schema(json::parse(R"({"s":"say \"hi\"\n"})"), schema);
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(errors[0].message, "s: Unsupported value: \"say \\\"hi\\\"\\n\": supported values: \"a\"");
}

// --- Pruning -------------------------------------------------------------------------------------

TEST(SchemaPrune, RemovesUndeclaredFieldsAndReportsTheirPaths) {
  json obj = with_spec(R"({"model":"m","foo":1,"items":[{"name":"a","bar":2}],"labels":{"any":"thing"},
      "extra":{"kept":{"deep":1}},"template":{"apiVersion":"v1","kind":"Pod","metadata":{"name":"t"},
      "spec":{"image":"x","junk":1},"other":2}})");
  obj["bogus"] = true;
  obj["status"] = {{"phase", "Running"}, {"why", "x"}};
  const std::vector<std::string> removed = prune_unknown_fields(obj, migration_schema());
  EXPECT_EQ(removed, (std::vector<std::string>{"bogus", "spec.foo", "spec.items[0].bar", "spec.template.other",
                                               "spec.template.spec.junk", "status.why"}));
  EXPECT_EQ(obj["apiVersion"], "hotswap.dev/v1");
  EXPECT_EQ(obj["kind"], "Migration");
  EXPECT_EQ(obj["metadata"], json::parse(R"({"name":"m"})"));
  EXPECT_EQ(obj["spec"]["labels"], json::parse(R"({"any":"thing"})"));
  EXPECT_EQ(obj["spec"]["extra"], json::parse(R"({"kept":{"deep":1}})"));
  EXPECT_EQ(obj["spec"]["template"],
            json::parse(R"({"apiVersion":"v1","kind":"Pod","metadata":{"name":"t"},"spec":{"image":"x"}})"));
  EXPECT_EQ(obj["spec"]["items"], json::parse(R"([{"name":"a"}])"));
}

TEST(SchemaPrune, NothingToPruneInAValidObject) {
  json obj = with_spec(R"({"model":"m","port":{"weird":1}})");
  const json before = obj;
  EXPECT_TRUE(prune_unknown_fields(obj, migration_schema()).empty());
  EXPECT_EQ(obj, before);
}

TEST(SchemaPrune, NeverTouchesRootMetadataEvenWhenTheSchemaListsIt) {
  json obj = json::parse(R"({"apiVersion":"v1","kind":"X","metadata":{"name":"a","labels":{"k":"v"}}})");
  const json schema = json::parse(R"({"type":"object","properties":{"apiVersion":{"type":"string"},
      "kind":{"type":"string"},"metadata":{"type":"object"}}})");
  EXPECT_TRUE(prune_unknown_fields(obj, schema).empty());
  EXPECT_EQ(obj["metadata"], json::parse(R"({"name":"a","labels":{"k":"v"}})"));
}

TEST(SchemaPrune, PreserveUnknownFieldsAtTheRootKeepsEverything) {
  json obj = json::parse(R"({"apiVersion":"v1","kind":"X","spec":{"a":1},"other":[1]})");
  const json schema = json::parse(R"({"type":"object","x-kubernetes-preserve-unknown-fields":true,
      "properties":{"spec":{"type":"object","properties":{}}}})");
  EXPECT_EQ(prune_unknown_fields(obj, schema), (std::vector<std::string>{"spec.a"}));
  EXPECT_EQ(obj, json::parse(R"({"apiVersion":"v1","kind":"X","spec":{},"other":[1]})"));
}

// --- Defaulting ----------------------------------------------------------------------------------

TEST(SchemaDefaults, FillsAbsentPropertiesInsideExistingObjects) {
  json obj = with_spec(R"({"model":"m","replicas":3})");
  apply_schema_defaults(obj, migration_schema());
  EXPECT_EQ(obj["spec"], json::parse(R"({"model":"m","replicas":3,"mode":"Auto"})"));
  json no_spec = json::parse(R"({"apiVersion":"v1","kind":"Migration","metadata":{}})");
  apply_schema_defaults(no_spec, migration_schema());
  EXPECT_FALSE(no_spec.contains("spec"));
}

TEST(SchemaDefaults, DefaultedObjectsGetTheirOwnDefaults) {
  const json schema = json::parse(R"({"type":"object","properties":{
      "spec":{"type":"object","default":{},"properties":{
        "policy":{"type":"object","default":{"kind":"Auto"},"properties":{"kind":{"type":"string"},
          "retries":{"type":"integer","default":3}}},
        "list":{"type":"array","items":{"type":"object","properties":{"w":{"type":"integer","default":1}}}}}}}})");
  json obj = json::parse(R"({"apiVersion":"v1","kind":"X","metadata":{}})");
  apply_schema_defaults(obj, schema);
  EXPECT_EQ(obj["spec"], json::parse(R"({"policy":{"kind":"Auto","retries":3}})"));
  json with_list = json::parse(R"({"spec":{"list":[{},{"w":5}]}})");
  apply_schema_defaults(with_list, schema);
  EXPECT_EQ(with_list["spec"]["list"], json::parse(R"([{"w":1},{"w":5}])"));
}

TEST(SchemaDefaults, NullsInNonNullableFieldsAreDefaultedOrDropped) {
  json obj = with_spec(R"({"model":"m","replicas":null,"enabled":null,"note":null})");
  apply_schema_defaults(obj, migration_schema());
  EXPECT_EQ(obj["spec"], json::parse(R"({"model":"m","replicas":1,"mode":"Auto","note":null})"));
  EXPECT_TRUE(validate_against_schema(obj, migration_schema()).empty());
}

// --- Structural schema checks --------------------------------------------------------------------

std::string structural_error(const char* schema) {
  Status st = check_structural_schema(json::parse(schema));
  EXPECT_FALSE(st.ok()) << schema;
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  return st.message();
}

TEST(SchemaStructural, AcceptsAStructuralSchema) {
  EXPECT_TRUE(check_structural_schema(migration_schema()).ok())
      << check_structural_schema(migration_schema()).to_string();
}

TEST(SchemaStructural, RootMustBeAnObject) {
  EXPECT_EQ(structural_error(R"({"properties":{}})"), "type: Required value: must not be empty at the root");
  EXPECT_EQ(structural_error(R"({"type":"array","items":{"type":"string"}})"),
            "type: Invalid value: \"array\": must be object at the root");
}

TEST(SchemaStructural, EveryNodeNeedsAType) {
  EXPECT_EQ(
      structural_error(R"({"type":"object","properties":{"spec":{"type":"object","properties":{"replicas":{}}}}})"),
      "properties[spec].properties[replicas].type: Required value: must not be empty for specified object fields");
  EXPECT_EQ(structural_error(R"({"type":"object","properties":{"list":{"type":"array","items":{}}}})"),
            "properties[list].items.type: Required value: must not be empty for specified array items");
  EXPECT_EQ(structural_error(R"({"type":"object","additionalProperties":{}})"),
            "additionalProperties.type: Required value: must not be empty for specified object fields");
  EXPECT_TRUE(check_structural_schema(json::parse(R"({"type":"object","properties":{
      "port":{"x-kubernetes-int-or-string":true},"any":{"x-kubernetes-preserve-unknown-fields":true}}})"))
                  .ok());
}

TEST(SchemaStructural, RefusesWhatKubernetesRefuses) {
  EXPECT_EQ(structural_error(R"({"type":"object","properties":{"a":{"type":"int"}}})"),
            "properties[a].type: Unsupported value: \"int\": supported values: \"array\", \"boolean\", \"integer\", "
            "\"number\", \"object\", \"string\"");
  EXPECT_EQ(structural_error(R"({"type":"object","properties":{"a":{"type":"array"}}})"),
            "properties[a].items: Required value: must be specified");
  EXPECT_EQ(structural_error(R"({"type":"object","properties":{"a":{"type":"string"}},
      "additionalProperties":{"type":"string"}})"),
            "additionalProperties: Forbidden: additionalProperties and properties are mutual exclusive");
  EXPECT_EQ(structural_error(R"({"type":"object","properties":{"a":{"type":"string","$ref":"#/x"}}})"),
            "properties[a].$ref: Forbidden: $ref is not supported");
  EXPECT_EQ(structural_error(R"({"type":"object","properties":{"a":{"type":"string","pattern":"(["}}})"),
            "properties[a].pattern: Invalid value: \"([\": must be a valid regular expression");
  EXPECT_EQ(
      structural_error(R"({"type":"object","properties":{"a":{"type":"string","x-kubernetes-int-or-string":true}}})"),
      "properties[a].type: Invalid value: \"string\": must be empty if x-kubernetes-int-or-string is true");
  EXPECT_EQ(structural_error(R"({"type":"object","x-kubernetes-preserve-unknown-fields":false})"),
            "x-kubernetes-preserve-unknown-fields: Invalid value: false: must be true or undefined");
  EXPECT_EQ(structural_error(R"({"type":"object","properties":{"a":{"type":"array","uniqueItems":true,
      "items":{"type":"string"}}}})"),
            "properties[a].uniqueItems: Forbidden: uniqueItems cannot be set to true since the runtime complexity "
            "becomes quadratic");
}

TEST(SchemaStructural, DefaultsMustBeValid) {
  EXPECT_EQ(structural_error(R"({"type":"object","properties":{"n":{"type":"integer","minimum":0,"default":-1}}})"),
            "properties[n].default: Invalid value: -1: properties[n].default in body should be greater than or equal "
            "to 0");
}

TEST(SchemaStructural, SeveralProblemsAreListedTogether) {
  EXPECT_EQ(structural_error(R"({"type":"object","properties":{"a":{},"b":{}}})"),
            "[properties[a].type: Required value: must not be empty for specified object fields, "
            "properties[b].type: Required value: must not be empty for specified object fields]");
}

}  // namespace
}  // namespace hotswap::devcluster
