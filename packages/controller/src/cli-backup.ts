import { UsageError, type Io } from './cli.js';
export async function backupCommand(_a: string[], _io: Io): Promise<number> { throw new UsageError('backup: not implemented yet'); }
export async function archivesCommand(_a: string[], _io: Io): Promise<number> { throw new UsageError('archives: not implemented yet'); }
export async function jobsCommand(_a: string[], _io: Io): Promise<number> { throw new UsageError('jobs: not implemented yet'); }
