using System.CommandLine;
using Kiln.Cli.Commands;

namespace Kiln.Cli;

/// <summary>
/// The kiln command line. Every failure becomes one "kiln: error: …" line on stderr and a non-zero
/// exit code (2 for usage errors, 1 for everything else); --verbose adds the stack trace.
/// </summary>
public static class CliApp
{
    public static readonly Option<bool> Verbose = new("--verbose", "-v")
    {
        Description = "Print full error details (stack traces)",
        Recursive = true,
    };

    public static int Run(string[] args, TextReader stdin, TextWriter stdout, TextWriter stderr)
    {
        var io = new CliIO(stdin, stdout, stderr);
        var root = new RootCommand("Kiln: run, serve, compress and train transformer language models in pure .NET.");
        root.Options.Add(Verbose);
        root.Subcommands.Add(RunCommand.Create(io));
        root.Subcommands.Add(ChatCommand.Create(io));
        root.Subcommands.Add(InfoCommand.Create(io));
        root.Subcommands.Add(TokenizeCommand.Create(io));
        root.Subcommands.Add(ConvertCommand.Create(io));
        root.Subcommands.Add(QuantizeCommand.Create(io));
        root.Subcommands.Add(PerplexityCommand.Create(io));
        root.Subcommands.Add(ImatrixCommand.Create(io));
        root.Subcommands.Add(BenchCommand.Create(io));
        root.Subcommands.Add(ServeCommand.Create(io));
        root.Subcommands.Add(LoadTestCommand.Create(io));
        root.Subcommands.Add(TokenizerCommand.Create(io));
        root.Subcommands.Add(DataCommand.Create(io));
        root.Subcommands.Add(TrainCommand.Create(io));
        root.Subcommands.Add(ExportCommand.Create(io));
        root.Subcommands.Add(FinetuneCommand.Create(io));
        root.Subcommands.Add(PlanCommand.Create(io));
        root.Subcommands.Add(MpiCheckCommand.Create(io));

        ParseResult parsed = root.Parse(args);
        bool verbose = args.Contains("--verbose") || args.Contains("-v");
        if (parsed.Errors.Count > 0)
        {
            stderr.WriteLine($"kiln: error: {parsed.Errors[0].Message}");
            string commandPath = string.Join(' ', parsed.CommandResult.Command == root ? ["kiln"] : new[] { "kiln", parsed.CommandResult.Command.Name });
            stderr.WriteLine($"Run '{commandPath} --help' for usage.");
            return 2;
        }

        try
        {
            return parsed.Invoke(new InvocationConfiguration
            {
                Output = stdout,
                Error = stderr,
                EnableDefaultExceptionHandler = false,
                // kiln serve handles SIGTERM/Ctrl-C itself (the web host's lifetime), with its own grace period for
                // running requests; System.CommandLine's handler would end the process two seconds after the signal.
                ProcessTerminationTimeout = parsed.CommandResult.Command.Name == "serve" ? null : new InvocationConfiguration().ProcessTerminationTimeout,
            });
        }
        catch (Exception e)
        {
            stdout.Flush();
            stderr.WriteLine($"kiln: error: {Describe(e)}");
            if (verbose)
                stderr.WriteLine(e.ToString());
            return e is CliException ? 2 : 1;
        }
        finally
        {
            stdout.Flush();
        }
    }

    internal static string Describe(Exception e) => e switch
    {
        FileNotFoundException f when f.FileName is not null && !f.Message.Contains(f.FileName) => $"file not found: {f.FileName}",
        DirectoryNotFoundException d => d.Message,
        UnauthorizedAccessException u => u.Message,
        OutOfMemoryException => "out of memory",
        _ => e.Message,
    };
}
