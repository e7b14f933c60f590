using Kiln.Cli;

return CliApp.Run(args, Console.In, ConsoleStreams.Stdout, ConsoleStreams.Stderr);
