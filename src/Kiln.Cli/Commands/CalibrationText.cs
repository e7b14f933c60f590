using System.Text;

namespace Kiln.Cli.Commands;

/// <summary>Calibration text for imatrix and GPTQ, read strictly (invalid UTF-8 is an error, not replaced).</summary>
internal static class CalibrationText
{
    public static string Read(string path)
    {
        if (!File.Exists(path))
            throw new FileNotFoundException($"calibration file not found: {path}", path);
        byte[] bytes;
        try
        {
            bytes = File.ReadAllBytes(path);
        }
        catch (UnauthorizedAccessException)
        {
            throw new CliException($"calibration file {path} cannot be read (permission denied)");
        }
        try
        {
            return new UTF8Encoding(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true).GetString(bytes);
        }
        catch (DecoderFallbackException e)
        {
            throw new InvalidDataException($"calibration file {path} is not UTF-8 text (invalid bytes at offset {e.Index})");
        }
    }
}
