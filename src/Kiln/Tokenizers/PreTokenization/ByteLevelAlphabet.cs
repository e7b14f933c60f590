namespace Kiln.Tokenizers.PreTokenization;

/// <summary>
/// GPT-2's reversible byte-to-character map: printable Latin-1 bytes stand for themselves and the remaining 68
/// bytes take the characters U+0100.. in byte order, so every byte string becomes a string of visible characters
/// and byte-level BPE vocabularies can store arbitrary bytes as text.
/// </summary>
internal static class ByteLevelAlphabet
{
    private static readonly char[] ByteToCharTable = BuildByteToChar();
    private static readonly short[] CharToByteTable = BuildCharToByte(ByteToCharTable);

    public static char ByteToChar(byte value) => ByteToCharTable[value];

    /// <summary>The byte a character stands for, or -1 when the character is not in the alphabet.</summary>
    public static int CharToByte(int codepoint) =>
        (uint)codepoint < (uint)CharToByteTable.Length ? CharToByteTable[codepoint] : -1;

    private static char[] BuildByteToChar()
    {
        var map = new char[256];
        int next = 256;
        for (int b = 0; b < 256; b++)
        {
            bool printable = b is >= 0x21 and <= 0x7E or >= 0xA1 and <= 0xAC or >= 0xAE and <= 0xFF;
            map[b] = printable ? (char)b : (char)next++;
        }
        return map;
    }

    private static short[] BuildCharToByte(char[] byteToChar)
    {
        var map = new short[0x144];
        Array.Fill(map, (short)-1);
        for (int b = 0; b < 256; b++)
            map[byteToChar[b]] = (short)b;
        return map;
    }
}
