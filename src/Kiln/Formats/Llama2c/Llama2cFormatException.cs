namespace Kiln.Formats.Llama2c;

/// <summary>
/// A llama2.c checkpoint or tokenizer file that is malformed, truncated, or inconsistent with itself.
/// The message names the file (when known) and the field or size that is wrong.
/// </summary>
public sealed class Llama2cFormatException : Exception
{
    public Llama2cFormatException(string message) : base(message)
    {
    }

    public Llama2cFormatException(string message, Exception innerException) : base(message, innerException)
    {
    }
}
