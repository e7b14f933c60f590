using Kiln.Serving.Constraints;

namespace Kiln.Tests.Serving.Constraints;

public class JsonSchemaCompilerTests
{
    [Fact]
    public void UnsupportedKeywordsAreNamedWithTheirLocation()
    {
        const string schema = """
            {"type":"object","properties":{"a":{"type":"string","pattern":"^x$","format":"email"},
             "b":{"type":"array","items":{"type":"integer","minimum":3}},"c":{"$ref":"https://example.com/s.json"}},"required":["a"]}
            """;
        var error = Assert.Throws<UnsupportedJsonSchemaException>(() => JsonSchemaCompiler.Compile(schema));
        Assert.Contains("$.properties.a: 'pattern'", error.Features);
        Assert.Contains("$.properties.a: 'format'", error.Features);
        Assert.Contains("$.properties.b.items: 'minimum'", error.Features);
        Assert.Contains(error.Features, f => f.StartsWith("$.properties.c: '$ref' to 'https://example.com/s.json'", StringComparison.Ordinal));
        Assert.Equal(4, error.Features.Count);
    }

    [Theory]
    [InlineData("""{"type":"object","required":["missing"],"properties":{"a":{}}}""", "'missing' is not declared")]
    [InlineData("""{"anyOf":[{"type":"object"},{"type":"object","properties":{"a":{}}}]}""", "start with the same character")]
    [InlineData("""{"type":"widget"}""", "unknown type 'widget'")]
    [InlineData("""{"$defs":{"n":{"type":"object","properties":{"next":{"$ref":"#/$defs/n"}}}},"$ref":"#/$defs/n"}""", "recursive '$ref' to '#/$defs/n'")]
    [InlineData("""{"$ref":"#/$defs/missing"}""", "points at nothing")]
    [InlineData("""{"$defs":{"s":{"type":"string"}},"properties":{"a":{"$ref":"#/$defs/s","minLength":2}}}""", "'minLength' beside '$ref'")]
    [InlineData("""{"type":"array","minItems":3,"maxItems":2}""", "exceeds maxItems")]
    public void SchemasTheGrammarCannotEnforceAreRejected(string schema, string expected)
    {
        var error = Assert.Throws<UnsupportedJsonSchemaException>(() => JsonSchemaCompiler.Compile(schema));
        Assert.Contains(error.Features, f => f.Contains(expected, StringComparison.Ordinal));
        Assert.Single(error.Features);
    }

    [Fact]
    public void LocalReferencesAreCompiledInPlace()
    {
        // The shape Pydantic and the OpenAI SDKs generate for nested models.
        JsonSchemaNode node = JsonSchemaCompiler.Compile("""
            {"$defs":{"Pet":{"type":"object","properties":{"kind":{"enum":["cat","dog"]}},"required":["kind"],"additionalProperties":false}},
             "type":"object","properties":{"pets":{"type":"array","items":{"$ref":"#/$defs/Pet"}},"best":{"$ref":"#/$defs/Pet","description":"d"}},
             "required":["pets","best"],"additionalProperties":false}
            """);
        JsonSchemaNode pet = node.Properties[0].Schema.Items;
        Assert.Equal(JsonSchemaKind.Object, pet.Kind);
        Assert.Equal("kind", pet.Properties[0].Name);
        Assert.Equal(JsonSchemaKind.Literals, node.Properties[1].Schema.Properties[0].Schema.Kind);
    }

    [Fact]
    public void SupportedSchemaCompilesToTheExpectedShape()
    {
        JsonSchemaNode node = JsonSchemaCompiler.Compile("""
            {"title":"t","type":"object","additionalProperties":false,"properties":{
              "name":{"type":"string","description":"d"},"age":{"type":["integer","null"]},
              "tags":{"type":"array","items":{"enum":["a","b"]},"maxItems":3}},"required":["name"]}
            """);
        Assert.Equal(JsonSchemaKind.Object, node.Kind);
        Assert.Equal(["name", "age", "tags"], node.Properties.Select(p => p.Name));
        Assert.Equal([true, false, false], node.Properties.Select(p => p.Required));
        Assert.Equal(JsonSchemaKind.AnyOf, node.Properties[1].Schema.Kind);
        Assert.Equal(3, node.Properties[2].Schema.MaxItems);
        Assert.Equal(JsonSchemaKind.Literals, node.Properties[2].Schema.Items.Kind);
        Assert.Null(node.AdditionalProperties);
    }
}
