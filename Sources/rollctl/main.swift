import RollctlCommands

await Rollctl.runMain()
