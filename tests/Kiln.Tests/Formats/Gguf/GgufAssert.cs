using Kiln.Formats.Gguf;

namespace Kiln.Tests.Formats.Gguf;

/// <summary>Structural comparison of metadata values; floats compare by bit pattern so NaN payloads and -0 count.</summary>
internal static class GgufAssert
{
    public static void SameValue(GgufValue expected, GgufValue actual, string what)
    {
        Assert.True(expected.Type == actual.Type, $"{what}: type {actual.Type}, expected {expected.Type}");
        switch (expected.Value)
        {
            case float e:
                Assert.True(BitConverter.SingleToInt32Bits(e) == BitConverter.SingleToInt32Bits((float)actual.Value), $"{what}: {actual.Value} != {e}");
                break;
            case double e:
                Assert.True(BitConverter.DoubleToInt64Bits(e) == BitConverter.DoubleToInt64Bits((double)actual.Value), $"{what}: {actual.Value} != {e}");
                break;
            case GgufArray e:
                SameArray(e, (GgufArray)actual.Value, what);
                break;
            default:
                Assert.True(Equals(expected.Value, actual.Value), $"{what}: {actual.Value} != {expected.Value}");
                break;
        }
    }

    public static void SameArray(GgufArray expected, GgufArray actual, string what)
    {
        Assert.True(expected.ElementType == actual.ElementType, $"{what}: element type {actual.ElementType}, expected {expected.ElementType}");
        Assert.True(expected.Count == actual.Count, $"{what}: {actual.Count} items, expected {expected.Count}");
        Assert.Equal(expected.Items.GetType(), actual.Items.GetType());
        for (int i = 0; i < expected.Count; i++)
            SameValue(expected.GetValue(i), actual.GetValue(i), $"{what}[{i}]");
    }
}
