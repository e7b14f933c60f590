namespace Kiln.Cli.Commands;

/// <summary>
/// The small Llama-family model Kiln trained itself on Tiny Shakespeare (docs/training.md, "The built-in model"),
/// kept in the repository's models/ folder and copied beside the kiln binary, so that run, chat and serve work
/// without -m on a machine where nothing has been downloaded.
/// </summary>
internal static class BuiltInModel
{
    public const string FileName = "kiln-shakespeare-q8_0.gguf";

    public static string Path => System.IO.Path.Combine(AppContext.BaseDirectory, "models", FileName);
}
