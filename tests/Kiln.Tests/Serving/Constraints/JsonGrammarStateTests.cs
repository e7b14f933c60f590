using System.Text;
using Kiln.Serving.Constraints;

namespace Kiln.Tests.Serving.Constraints;

public class JsonGrammarStateTests
{
    private const string PersonSchema = """
        {"type":"object","properties":{"name":{"type":"string"},"age":{"type":"integer"},"nick":{"type":"string"},
         "ok":{"type":"boolean"}},"required":["name","ok"]}
        """;

    private static JsonGrammarState? Run(JsonSchemaNode schema, string text)
    {
        JsonGrammarState? state = JsonGrammarState.Start(schema);
        foreach (byte b in Encoding.UTF8.GetBytes(text))
        {
            state = state.Step(b);
            if (state is null)
                return null;
        }
        return state;
    }

    [Theory]
    [InlineData("{}")]
    [InlineData("""{"a": [1, -2.5e+10, 0, true, false, null, "x\n\u00e9é😀"], "b": {"c": {}}}""")]
    [InlineData(" \n{ \"k\" :\t\"v\" }")]
    [InlineData("""{"":-0.0E-1}""")]
    public void AnyObjectAcceptsValidDocuments(string text)
    {
        JsonGrammarState? state = Run(JsonSchemaNode.AnyObject, text);
        Assert.NotNull(state);
        Assert.True(state.CanEnd);
        Assert.True(state.IsComplete);
    }

    [Theory]
    [InlineData("[]")]
    [InlineData("{\"a\":01}")]
    [InlineData("{\"a\":1,}")]
    [InlineData("{\"a\" 1}")]
    [InlineData("{'a':1}")]
    [InlineData("{\"a\":tru}x")]
    [InlineData("{\"a\":\"\u0001\"}")]
    [InlineData("{\"a\":\"\\x\"}")]
    [InlineData("{\"a\":\"\\ud800\"}")]
    [InlineData("{} ")]
    [InlineData("{\"a\":1.}")]
    [InlineData("{\"a\":1e}")]
    public void AnyObjectRejectsInvalidText(string text) => Assert.Null(Run(JsonSchemaNode.AnyObject, text));

    [Fact]
    public void InvalidUtf8InStringsIsRejected()
    {
        JsonGrammarState state = Run(JsonSchemaNode.AnyObject, "{\"a\":\"")!;
        Assert.Null(state.Step(0xC0));          // overlong lead
        Assert.Null(state.Step(0x80));          // stray continuation
        Assert.Null(state.Step(0xED)!.Step(0xA0)); // surrogate
        Assert.Null(state.Step(0xF5));          // beyond U+10FFFF
        Assert.NotNull(state.Step(0xE2)!.Step(0x82)!.Step(0xAC)); // €
    }

    [Fact]
    public void WhitespaceRunsAreBounded()
    {
        string gap = new(' ', JsonGrammarState.MaxWhitespaceRun);
        Assert.NotNull(Run(JsonSchemaNode.AnyObject, "{" + gap + "}"));
        Assert.Null(Run(JsonSchemaNode.AnyObject, "{" + gap + " }"));
    }

    [Fact]
    public void NumbersHaveBoundedDigits()
    {
        string digits = "1" + new string('0', JsonGrammarState.MaxIntegerDigits - 1);
        Assert.NotNull(Run(JsonSchemaNode.AnyObject, "{\"a\":" + digits + "}"));
        Assert.Null(Run(JsonSchemaNode.AnyObject, "{\"a\":" + digits + "0"));
    }

    [Theory]
    [InlineData("""{"name":"x","ok":true}""", true)]
    [InlineData("""{"name":"x","age":3,"nick":"y","ok":false}""", true)]
    [InlineData("""{"name":"x","nick":"y","ok":false}""", true)]
    [InlineData("""{"ok":true}""", false)]              // required name missing
    [InlineData("""{"name":"x"}""", false)]             // required ok missing
    [InlineData("""{"name":"x","ok":true,"age":1}""", false)] // order is declared order
    [InlineData("""{"name":"x","age":1.5,"ok":true}""", false)] // integer
    [InlineData("""{"name":"x","extra":1,"ok":true}""", false)]
    [InlineData("""{"name":"x","ok":"yes"}""", false)]
    public void DeclaredPropertiesAreEnforced(string text, bool valid)
    {
        JsonGrammarState? state = Run(JsonSchemaCompiler.Compile(PersonSchema), text);
        Assert.Equal(valid, state is not null && state.CanEnd);
    }

    [Fact]
    public void EnumsArraysAndTopLevelNumbers()
    {
        JsonSchemaNode schema = JsonSchemaCompiler.Compile("""{"type":"array","items":{"enum":[1,12,"a",null]},"minItems":1,"maxItems":2}""");
        Assert.True(Run(schema, "[12,\"a\"]")!.IsComplete);
        Assert.Null(Run(schema, "[]"));
        Assert.Null(Run(schema, "[1,1,1"));
        Assert.Null(Run(schema, "[2"));
        Assert.NotNull(Run(schema, "[1"));

        JsonGrammarState number = Run(JsonSchemaCompiler.Compile("""{"type":"number"}"""), "-12.5")!;
        Assert.True(number.CanEnd);
        Assert.False(number.IsComplete); // more digits may follow
    }

    [Theory]
    [InlineData("\"ab\"", true)]
    [InlineData("\"é😀\\n\"", true)]   // three characters: two multi-byte, one escape
    [InlineData("\"\\u00e9x\"", true)]
    [InlineData("\"a\"", false)]
    [InlineData("\"abcd\"", false)]
    public void StringLengthsCountCharacters(string text, bool valid)
    {
        JsonSchemaNode schema = JsonSchemaCompiler.Compile("""{"type":"string","minLength":2,"maxLength":3}""");
        JsonGrammarState? state = Run(schema, text);
        Assert.Equal(valid, state is not null && state.IsComplete);
    }
}
