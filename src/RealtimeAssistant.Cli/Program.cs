using RealtimeAssistant.Cli;

return await Cli.Main(args);
